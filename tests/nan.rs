//! NaN in, NaN out, as in PyTorch: bad data must stay visible through every activation (standalone and fused into
//! a convolution's epilogue) and max pooling, instead of turning into finite numbers.

mod common;

use atrous::graph::GraphBuilder;
use atrous::ops::{Activation, Conv2d, ConvWeights, MaxPool2d};
use atrous::{Engine, Shape, Tensor};

#[test]
fn nan_should_propagate_through_activations_and_max_pooling() {
    let gpu = gpu_or_skip!();
    let mut b = GraphBuilder::new();
    let x = b.input("input", 1);
    let mut outputs = Vec::new();
    for a in Activation::ALL
        .into_iter()
        .filter(|&a| a != Activation::None)
    {
        outputs.push(b.activation(a.name(), &x, a));
        // The same activation fused into a 1 x 1 convolution's epilogue (weight 1, so NaN passes the product).
        let w = ConvWeights {
            weight: vec![1.0],
            bias: None,
            batch_norm: None,
        };
        let c = b
            .conv2d(
                &format!("conv_{}", a.name()),
                &x,
                Conv2d::new(1, 1, [1, 1]),
                w,
            )
            .unwrap();
        outputs.push(b.activation(&format!("fused_{}", a.name()), &c, a));
    }
    outputs.push(b.max_pool2d("pool", &x, MaxPool2d::new([2, 2])));
    let names: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let model = b.finish(&names).unwrap();
    let engine = Engine::new(gpu, model);
    let input = Tensor::new(Shape::new(1, 1, 2, 2), vec![f32::NAN, -1.0, 2.0, -7.0]).unwrap();
    let got = engine.run(&[("input", &input)], &names).unwrap();
    for name in &names {
        let v = got[*name].to_f32().data;
        assert!(v[0].is_nan(), "{name}: NaN became {}", v[0]);
        if *name != "pool" {
            assert!(v[1..].iter().all(|y| y.is_finite()), "{name}: {v:?}");
        }
    }
    // The CPU reference agrees.
    for a in Activation::ALL {
        assert!(a.apply(f64::NAN).is_nan(), "{}", a.name());
    }
}
