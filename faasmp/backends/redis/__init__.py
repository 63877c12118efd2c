"""The Redis side of faasmp's shared structures: one module per structure, owning its Lua and keys."""
