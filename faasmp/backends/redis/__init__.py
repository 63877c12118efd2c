"""Redis data structures of faasmp, one module per structure.

Each module holds a small class with named methods that owns its Lua
scripts, its key layout and its round-trip budget; API modules call those
methods and never speak Redis themselves.
"""
