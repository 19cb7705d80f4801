//! Generates the prost messages and the tonic server and client of
//! `proto/orchestrator_service.proto` with protox (pure Rust: no system `protoc`; the well-known
//! `google/protobuf/*.proto` files come bundled with it). With no `package` in the file, the
//! code lands in `$OUT_DIR/_.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/orchestrator_service.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
