//! The Manager: a server process that owns shared objects, and the proxies that reach them.
