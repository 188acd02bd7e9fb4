//! segmentation_models_pytorch's FPN decoder (`decoder.p5`, `decoder.p{4,3,2}.skip_conv`, `decoder.seg_blocks`), on
//! the features of an smp encoder ([`super::smp`] builds the encoder and the head).
//!
//! `p5 = conv1x1(c5)`; `p_k = upsample2(p_{k+1}) + conv1x1(c_k)`; each pyramid level goes through a segmentation
//! block of `Conv3x3GNReLU`s (3x3 conv without bias, `GroupNorm(32, C)`, ReLU, then a bilinear x2 with
//! align_corners=True while the level is below stride 4), and the four results are summed (`merge_policy="add"`)
//! or concatenated (`"cat"`).

use super::{bare, ConvSpec, Net};
use crate::error::{Error, Result};
use crate::ops::{Activation, Resize, ResizeMode, ResizeTarget};
use crate::weights::Prefixed;

/// smp hard-codes the group count of its `Conv3x3GNReLU`.
const GROUPS: usize = 32;

fn twice(mode: ResizeMode) -> Resize {
    Resize {
        mode,
        target: ResizeTarget::Scale([2.0, 2.0]),
    }
}

/// The decoder's output for encoder features `feats` (`[x, stride 2, stride 4, ...]`), with smp's
/// `decoder_merge_policy` and `decoder_interpolation` (the top-down upsampling).
pub fn decoder(
    net: &mut Net,
    dec: &Prefixed,
    feats: &[String],
    merge: &str,
    interpolation: &str,
) -> Result<String> {
    let mode = super::smp_decoders::decoder_interpolation("FPN", interpolation)?;
    if merge != "add" && merge != "cat" {
        return Err(Error::Model(format!(
            "smp FPN decoder_merge_policy {merge:?} is not supported (add, cat)"
        )));
    }
    if feats.len() < 4 {
        return Err(Error::Model(format!(
            "smp FPN needs encoder_depth >= 3, got {}",
            feats.len() - 1
        )));
    }
    // smp takes the last four features whatever the depth: c2, c3, c4, c5.
    let c = &feats[feats.len() - 4..];
    let bias = ConvSpec::same().with_bias();
    let p5 = dec.pp("p5");
    let mut pyramid = vec![net.conv(&bare(&p5), &c[3], &p5, None, bias, Activation::None)?];
    for (level, skip) in [("p4", &c[2]), ("p3", &c[1]), ("p2", &c[0])] {
        let bp = dec.pp(level);
        let above = pyramid.last().expect("p5 is there");
        let up = net.b.resize(&bp.name("up"), above, twice(mode));
        let sc = bp.pp("skip_conv");
        let lateral = net.conv(&bare(&sc), skip, &sc, None, bias, Activation::None)?;
        pyramid.push(net.b.add(&bare(&bp), &up, &lateral));
    }
    let aligned = ResizeMode::Bilinear {
        align_corners: true,
    };
    let mut levels = Vec::new();
    for (i, (p, upsamples)) in pyramid.iter().zip([3usize, 2, 1, 0]).enumerate() {
        let mut y = p.clone();
        for j in 0..upsamples.max(1) {
            let b = dec.pp(format!("seg_blocks.{i}.block.{j}.block"));
            let conv = b.pp("0");
            y = net.conv(
                &bare(&conv),
                &y,
                &conv,
                None,
                ConvSpec::same(),
                Activation::None,
            )?;
            y = net.group_norm(&bare(&b.pp("1")), &y, &b.pp("1"), GROUPS, Activation::Relu)?;
            if upsamples > 0 {
                y = net.b.resize(&b.name("up"), &y, twice(aligned));
            }
        }
        levels.push(y);
    }
    Ok(match merge {
        "add" => {
            let mut sum = levels[0].clone();
            for (k, level) in levels.iter().enumerate().skip(1) {
                sum = net.b.add(&dec.name(&format!("merge.{k}")), &sum, level);
            }
            sum
        }
        _ => {
            let refs: Vec<&str> = levels.iter().map(String::as_str).collect();
            net.b.concat(&dec.name("merge"), &refs)
        }
    })
}
