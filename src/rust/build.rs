// Test binaries and the bench binary link libtorch dynamically; give them an
// rpath so they run without LD_LIBRARY_PATH. (For the staticlib R links, this
// is ignored: src/Makevars sets the rpath of the package's shared object.)
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(dir) = std::env::var("LIBTORCH") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}/lib");
    }
}
