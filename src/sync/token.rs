//! Resume tokens and operation times as they are recorded in status: a token is kept as the
//! relaxed extended JSON of the event's `_id` (`{"_data": "<hex>"}`), bounded in size, and its
//! cluster time is read back from it where the format is known (MongoDB's KeyString, whose
//! first byte 0x82 is followed by the big-endian timestamp, or SecantusDB's, a BSON document
//! whose `t` field is the timestamp).

use mongodb::bson::{Bson, Document, Timestamp};
use mongodb::change_stream::event::ResumeToken;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest token recorded. A longer one is not recorded: the previous token (and position)
/// stay, so a restart applies a few events again, which is harmless.
pub const MAX_TOKEN_LEN: usize = 1024;

/// A cluster time: seconds since the epoch and the increment within that second.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct OpTime {
    /// Seconds since the epoch.
    pub t: u32,
    /// The increment within that second.
    pub i: u32,
}

impl From<Timestamp> for OpTime {
    fn from(ts: Timestamp) -> Self {
        OpTime {
            t: ts.time,
            i: ts.increment,
        }
    }
}

impl From<OpTime> for Timestamp {
    fn from(o: OpTime) -> Self {
        Timestamp {
            time: o.t,
            increment: o.i,
        }
    }
}

impl std::fmt::Display for OpTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.t, self.i)
    }
}

/// The token as it is recorded, or `None` when it cannot be serialized or is too long.
pub fn encode(token: &ResumeToken) -> Option<String> {
    let bson = mongodb::bson::to_bson(token).ok()?;
    let s = bson.into_relaxed_extjson().to_string();
    (s.len() <= MAX_TOKEN_LEN).then_some(s)
}

/// A recorded token back, or `None` when the text is not one.
pub fn decode(text: &str) -> Option<ResumeToken> {
    let json: serde_json::Value = serde_json::from_str(text).ok()?;
    let bson = Bson::try_from(json).ok()?;
    mongodb::bson::from_bson(bson).ok()
}

/// The cluster time a token stands for, where its format is known.
pub fn time_of(token: &ResumeToken) -> Option<OpTime> {
    let bson = mongodb::bson::to_bson(token).ok()?;
    let doc = bson.as_document()?;
    time_of_document(doc)
}

fn time_of_document(doc: &Document) -> Option<OpTime> {
    let hex = doc.get_str("_data").ok()?;
    let bytes = hex_bytes(hex)?;
    match bytes.first() {
        // MongoDB's KeyString: CType 130 (timestamp), then time and increment big-endian.
        Some(0x82) if bytes.len() >= 9 => Some(OpTime {
            t: u32::from_be_bytes(bytes[1..5].try_into().ok()?),
            i: u32::from_be_bytes(bytes[5..9].try_into().ok()?),
        }),
        _ => {
            let d = Document::from_reader(&mut bytes.as_slice()).ok()?;
            d.get_timestamp("t").ok().map(OpTime::from)
        }
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    /// A token SecantusDB 0.5.3 returned for an insert at cluster time (1796562458, 6).
    const SECANTUS: &str = "390000001273000400000000000000117400060000001A5E156B026E00060000007372632E6100036B000E000000105F696400010000000000";

    fn token(hex: &str) -> ResumeToken {
        mongodb::bson::from_bson(Bson::Document(doc! {"_data": hex})).unwrap()
    }

    #[test]
    fn times_of_both_formats() {
        assert_eq!(
            time_of(&token(SECANTUS)),
            Some(OpTime {
                t: 1796562458,
                i: 6
            })
        );
        // MongoDB: 0x82, then 0x6553A1B2 and increment 3, then the rest of the KeyString.
        assert_eq!(
            time_of(&token("826553A1B2000000032B022C0100296E5A1004")),
            Some(OpTime {
                t: 0x6553_A1B2,
                i: 3
            })
        );
        assert_eq!(time_of(&token("zz")), None);
        assert_eq!(time_of(&token("")), None);
    }

    #[test]
    fn tokens_round_trip_as_extended_json() {
        let t = token(SECANTUS);
        let text = encode(&t).unwrap();
        assert!(text.contains("_data"), "{text}");
        assert_eq!(decode(&text), Some(t));
        assert_eq!(decode("not json"), None);
        let long = token(&"00".repeat(MAX_TOKEN_LEN));
        assert_eq!(encode(&long), None, "too long to record");
    }

    #[test]
    fn op_times_order_by_time_then_increment() {
        let a = OpTime { t: 10, i: 5 };
        assert!(a < OpTime { t: 10, i: 6 });
        assert!(a < OpTime { t: 11, i: 0 });
        assert_eq!(OpTime::from(Timestamp::from(a)), a);
    }
}
