//! A seed fixes the weights: the same seed exports the same bytes, another seed other bytes.
//!
//! Alone in its test binary on purpose: burn's device RNG is process-global, so a test running
//! in parallel in the same binary could draw from it between seeding and initialisation.

use burn::prelude::*;
use mbt_model::export::{export, ExportOptions};
use mbt_model::{FusionKind, Mbt};

mod common;
use common::small;

#[test]
fn same_seed_same_file() {
    let cfg = small(FusionKind::Bottleneck, 1);
    let opts = ExportOptions {
        model_version: "det".into(),
        training_data_hash: "none".into(),
        int8: None,
        thresholds: Default::default(),
    };
    let bytes = |seed| {
        let device = Device::flex();
        device.seed(seed);
        export(&Mbt::new(&cfg, &device), &cfg, &opts).unwrap()
    };
    assert_eq!(bytes(9), bytes(9));
    assert_ne!(bytes(9), bytes(10));
}
