//! Compiles the trimmed etcd v3 protos in `proto/etcd` with protox (pure Rust), so
//! building Weft needs no `protoc`. Only a client is generated.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/etcd/rpc.proto");
    println!("cargo:rerun-if-changed=proto/etcd/kv.proto");
    let fds = protox::compile(["etcd/rpc.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
