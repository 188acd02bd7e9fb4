//! Typed access to a node's attributes, with errors that name the attribute and what was found.

use super::proto::AttributeProto;
use super::tensor::HostTensor;
use crate::error::{Error, Result};

/// `AttributeProto.type` codes.
const FLOAT: i32 = 1;
const INT: i32 = 2;
const STRING: i32 = 3;
const TENSOR: i32 = 4;
const FLOATS: i32 = 6;
const INTS: i32 = 7;

pub struct Attrs<'a> {
    list: &'a [AttributeProto],
}

fn wrong(a: &AttributeProto, want: &str) -> Error {
    Error::Model(format!(
        "attribute {:?} must be {want} (attribute type {} in the file)",
        a.name, a.r#type
    ))
}

impl<'a> Attrs<'a> {
    pub fn new(list: &'a [AttributeProto]) -> Self {
        Attrs { list }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.list.iter().find(|a| a.name == name)
    }

    pub fn int_opt(&self, name: &str) -> Result<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == INT || (a.r#type == 0 && a.i != 0) => Ok(Some(a.i)),
            Some(a) => Err(wrong(a, "an int")),
        }
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.int_opt(name)?.unwrap_or(default))
    }

    pub fn float_opt(&self, name: &str) -> Result<Option<f32>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == FLOAT || a.r#type == 0 => Ok(Some(a.f)),
            Some(a) => Err(wrong(a, "a float")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.float_opt(name)?.unwrap_or(default))
    }

    pub fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(a) => Err(wrong(a, "a list of ints")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>> {
        self.ints_opt(name)?
            .ok_or_else(|| Error::Model(format!("attribute {name:?} is required")))
    }

    pub fn floats_opt(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == FLOATS || a.r#type == 0 => Ok(Some(a.floats.clone())),
            Some(a) => Err(wrong(a, "a list of floats")),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) if a.r#type == STRING || a.r#type == 0 => String::from_utf8(a.s.clone())
                .map_err(|_| Error::Model(format!("attribute {name:?} is not UTF-8"))),
            Some(a) => Err(wrong(a, "a string")),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<HostTensor>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == TENSOR || a.r#type == 0 => match &a.t {
                Some(t) => Ok(Some(HostTensor::from_proto(t, None)?)),
                None => Err(wrong(a, "a tensor")),
            },
            Some(a) => Err(wrong(a, "a tensor")),
        }
    }
}
