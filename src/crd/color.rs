//! Which of the two versions is meant, shared by what the user asks for (`spec.traffic`) and
//! what cutover records (`status.activeColor`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The two versions of the application.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Color {
    /// The version running before the plan.
    Blue,
    /// The version the plan deploys.
    #[default]
    Green,
}

impl Color {
    pub fn as_str(&self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }
}
