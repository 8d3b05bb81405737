//! Userspace forwarder: TAP devices, VXLAN tunnels, flow cache, runs the pipeline executor.
