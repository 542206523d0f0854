//! Link settings of the operator's binaries that a cargo profile cannot express.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if packs_relative_relocations() {
        // A position-independent executable carries one relocation for every pointer in its
        // read-only data (vtables, panic locations, tables of strings): 74,000 of 24 bytes
        // each here, 1.8 MB that the loader reads at every start and that stay resident, a
        // tenth of the operator's resident size with 500 services. Packed (DT_RELR) they take
        // 26 kB, and the binary stays position-independent (its address still randomized).
        // Only the binaries: the test executables gain nothing from it.
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the linker packs relative relocations and the C library loads what it packed
/// (GNU ld 2.38 or lld 15, glibc 2.36: Debian 12 on). Tried on a one-line program, as LLVM's
/// own build does; an older toolchain just links the usual way.
fn packs_relative_relocations() -> bool {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return false;
    }
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out_dir.join("relr_probe.c");
    let probe = out_dir.join("relr_probe");
    if std::fs::write(&source, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    // The release images link glibc statically (a static PIE relocates itself at start).
    let static_pie = env::var("CARGO_CFG_TARGET_FEATURE")
        .unwrap_or_default()
        .split(',')
        .any(|f| f == "crt-static");
    // The linker cargo was told to use for this target (`target.<triple>.linker`), else the
    // one rustc calls by default: the probe must try the linker the binaries get.
    let linker = env::var_os("RUSTC_LINKER").unwrap_or_else(|| "cc".into());
    let mut link = Command::new(linker);
    link.arg(&source).arg("-o").arg(&probe).arg("-fPIE");
    link.arg(if static_pie { "-static-pie" } else { "-pie" });
    link.arg("-Wl,-z,pack-relative-relocs");
    if !link.output().is_ok_and(|o| o.status.success()) {
        return false;
    }
    // A cross build cannot run what it links: the link is the test it has.
    if env::var("HOST").ok() != env::var("TARGET").ok() {
        return true;
    }
    Command::new(&probe)
        .output()
        .is_ok_and(|o| o.status.success())
}
