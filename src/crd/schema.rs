//! Schemas written by hand where the derived one would be wrong or wasteful.

use schemars::{Schema, SchemaGenerator, json_schema};

/// An object the API server stores as given: the frozen spec in status repeats a schema the
/// CRD already has under `spec`, and the operator is the only writer.
pub fn any_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}
