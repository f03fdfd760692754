//! Checkpoints: a [`Trainer`]'s weights, optimiser state and parameter ids written to a run
//! folder and read back on resume, and plain weight files loaded into a model
//! ([`load_weights`], [`load_model`]) for evaluation and export.

use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use thiserror::Error;

use super::trainer::{optimizer, Trainer};
use crate::{Mbt, ModelConfig};

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl Trainer {
    /// Writes `dir/model.bpk` and `dir/optim.bin` (the caller writes the run state beside).
    pub fn save(&self, dir: &Path) -> Result<(), CheckpointError> {
        let io = |p: &Path, e: &dyn std::fmt::Display| CheckpointError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, &e))?;
        let mp = dir.join("model.bpk");
        self.model().save_file(&mp).map_err(|e| io(&mp, &e))?;
        let op = dir.join("optim.bin");
        self.optim.save(&op).map_err(|e| io(&op, &e))?;
        // The optimiser state is keyed by parameter id; a model rebuilt on resume gets fresh
        // ids, so the ids are saved (in visiting order) and given back on load.
        let mut ids = CollectIds(Vec::new());
        self.model().visit(&mut ids);
        let ip = dir.join("param_ids.json");
        let text = serde_json::to_string(&ids.0).map_err(|e| io(&ip, &e))?;
        std::fs::write(&ip, text).map_err(|e| io(&ip, &e))?;
        Ok(())
    }

    /// Restores weights and optimiser state written by [`Trainer::save`].
    pub fn load(&mut self, dir: &Path) -> Result<(), CheckpointError> {
        let io = |p: &Path, e: &dyn std::fmt::Display| CheckpointError::Io {
            path: p.display().to_string(),
            message: e.to_string(),
        };
        let mp = dir.join("model.bpk");
        let Some(model) = self.model.take() else {
            unreachable!("the model is put back at the end of every step")
        };
        let ip = dir.join("param_ids.json");
        let ids: Vec<u64> = std::fs::read_to_string(&ip)
            .map_err(|e| io(&ip, &e))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| io(&ip, &e)))?;
        let mut count = CollectIds(Vec::new());
        model.visit(&mut count);
        if count.0.len() != ids.len() {
            self.model = Some(model);
            return Err(io(
                &ip,
                &format!(
                    "{} parameter ids, but the model has {} parameters (a checkpoint of another config)",
                    ids.len(),
                    count.0.len()
                ),
            ));
        }
        let loaded = load_weights(model.clone(), &mp).map(|m| m.map(&mut SetIds { ids, next: 0 }));
        self.model = Some(match loaded {
            Ok(m) => m,
            Err(e) => {
                self.model = Some(model);
                return Err(e);
            }
        });
        let op = dir.join("optim.bin");
        let optim = optimizer(&self.train);
        self.optim = optim.load(&op).map_err(|e| io(&op, &e))?;
        Ok(())
    }
}

struct CollectIds(Vec<u64>);

impl ModuleVisitor for CollectIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id.val());
    }
}

struct SetIds {
    ids: Vec<u64>,
    next: usize,
}

impl ModuleMapper for SetIds {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(&id) = self.ids.get(self.next) {
            param.id = ParamId::from(id);
        }
        self.next += 1;
        param
    }
}

/// Loads weights saved by [`Trainer::save`] (or [`save_weights`]) into `model`.
pub fn load_weights(model: Mbt, path: &Path) -> Result<Mbt, CheckpointError> {
    let io = |e: &dyn std::fmt::Display| CheckpointError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let record = burn::store::ModuleRecord::load(path).map_err(|e| io(&e))?;
    model.try_load_record(record).map_err(|e| io(&e))
}

/// Builds a model for `cfg` on the plain CPU device and loads `path` into it.
pub fn load_model(cfg: &ModelConfig, path: &Path) -> Result<Mbt, CheckpointError> {
    let device = Device::flex();
    load_weights(Mbt::new(cfg, &device), path)
}
