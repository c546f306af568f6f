//! Client tests with in-process fake servers.
