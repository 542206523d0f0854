//! Spec files the bench writes for the operator: services, an owned network, and a service that
//! can never be applied.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::swarm::{BENCH_LABEL, TEST_IMAGE};

/// One operator's spec directory.
pub struct SpecDir {
    pub path: PathBuf,
    /// The run's prefix, the value of [`BENCH_LABEL`] on every service.
    run: String,
}

impl SpecDir {
    pub fn create(path: PathBuf, run: &str) -> Result<SpecDir> {
        std::fs::create_dir_all(&path)?;
        Ok(SpecDir {
            path,
            run: run.to_owned(),
        })
    }

    /// A service like the stack's: `replicas: 0`, so no container starts and only the control
    /// plane is measured.
    pub fn service(&self, name: &str, env: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\n  labels: {{{BENCH_LABEL}: {}}}\nspec:\n  image: {TEST_IMAGE}\n  replicas: 0\n  args: [sleep, \"3600\"]\n  endpointMode: dnsrr\n  stopGracePeriod: 1s\n  env: {{BENCH: \"{env}\"}}\n",
            self.run
        )
    }

    /// A service publishing `port` on the ingress mesh, which another service holds.
    pub fn service_on_port(&self, name: &str, port: u16) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\n  labels: {{{BENCH_LABEL}: {}}}\nspec:\n  image: {TEST_IMAGE}\n  replicas: 0\n  args: [sleep, \"3600\"]\n  ports: [{{target: 80, published: {port}}}]\n",
            self.run
        )
    }

    pub fn network(&self, name: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata:\n  name: {name}\n  labels: {{{BENCH_LABEL}: {}}}\nspec:\n  driver: overlay\n",
            self.run
        )
    }

    /// Writes a spec file atomically (temp file + rename, like an editor's save).
    pub fn write(&self, file: &str, text: &str) -> Result<()> {
        let tmp = self.path.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.file(file))?;
        Ok(())
    }

    pub fn remove(&self, file: &str) -> Result<()> {
        std::fs::remove_file(self.file(file))?;
        Ok(())
    }

    fn file(&self, file: &str) -> PathBuf {
        Path::new(&self.path).join(file)
    }
}
