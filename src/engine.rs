//! An engine: one model on one GPU, with a plan compiled per input shape on first use. Weights are uploaded once and
//! shared by every plan. Usable from several threads.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::Model;
use crate::plan::{Output, Plan, PlanOptions, WeightCache};
use crate::tensor::{Shape, Tensor};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type PlanKey = Vec<(String, Shape)>;

pub struct Engine {
    gpu: Arc<Gpu>,
    model: Model,
    options: PlanOptions,
    weights: WeightCache,
    plans: Mutex<HashMap<PlanKey, Arc<Plan>>>,
}

impl Engine {
    pub fn new(gpu: Arc<Gpu>, model: Model) -> Self {
        Self::with_options(gpu, model, PlanOptions::default())
    }

    pub fn with_options(gpu: Arc<Gpu>, model: Model, options: PlanOptions) -> Self {
        Engine {
            gpu,
            model,
            options,
            weights: WeightCache::default(),
            plans: Mutex::default(),
        }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn options(&self) -> PlanOptions {
        self.options
    }

    /// The weight uploads shared by this engine's plans.
    pub fn weight_cache(&self) -> &WeightCache {
        &self.weights
    }

    /// The plan for these input shapes, compiled on first use.
    pub fn plan(&self, shapes: &[(&str, Shape)]) -> Result<Arc<Plan>> {
        let mut key: PlanKey = shapes.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        key.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(plan) = self.plans.lock().expect("plan cache poisoned").get(&key) {
            return Ok(plan.clone());
        }
        // Compiled outside the lock so other shapes can run meanwhile; a race compiles twice and keeps one.
        let map: HashMap<String, Shape> = key.iter().cloned().collect();
        let plan = Arc::new(Plan::compile(
            self.gpu.clone(),
            &self.model,
            &map,
            self.options,
            &self.weights,
        )?);
        Ok(self
            .plans
            .lock()
            .expect("plan cache poisoned")
            .entry(key)
            .or_insert(plan)
            .clone())
    }

    /// Runs the model on `inputs`, reading back `outputs`.
    pub fn run(
        &self,
        inputs: &[(&str, &Tensor)],
        outputs: &[&str],
    ) -> Result<HashMap<String, Output>> {
        let shapes: Vec<(&str, Shape)> = inputs.iter().map(|(n, t)| (*n, t.shape)).collect();
        self.plan(&shapes)?.run(inputs, outputs)
    }
}
