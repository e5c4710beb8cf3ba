//! Generates the API messages from `proto/` with a pure-Rust protobuf compiler
//! (protox), so building stead needs no system `protoc`. prost writes the structs,
//! tonic the gRPC services (server, and client for tests and tools) from the same
//! descriptors; pbjson writes their proto3 JSON mapping (for the HTTP gateway).
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["rpc.proto", "internal.proto", "v3lock.proto", "v3election.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("stead_descriptor.bin");
    std::fs::write(&descriptor_path, descriptors.encode_to_vec())?;

    let mut prost_config = prost_build::Config::new();
    prost_config.file_descriptor_set_path(&descriptor_path).skip_protoc_run();
    // Services keep their proto package and names (`etcdserverpb.KV`, ...), so
    // etcd's own clients find them.
    // The codec is prost's, counting every message's bytes for etcd's
    // `etcd_network_client_grpc_*_bytes_total` (src/net/grpc_codec.rs).
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::net::grpc_codec::CountingCodec")
        .compile_fds_with_config(descriptors, prost_config)?;

    let descriptor_bytes = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .preserve_proto_field_names()
        // etcd's gateway ignores fields it does not know; so do we.
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb", ".steadpb", ".v3lockpb", ".v3electionpb"])?;
    Ok(())
}
