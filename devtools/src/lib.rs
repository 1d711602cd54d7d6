//! Development-only tools for cutover's local environment.
