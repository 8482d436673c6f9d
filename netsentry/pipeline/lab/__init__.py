"""The lab: an emulated cloud in network namespaces with real kernels, servers and attack tools."""
