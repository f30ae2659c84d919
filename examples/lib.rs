//! Shared code for the buttress examples.
