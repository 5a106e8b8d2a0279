//! The path the JSON writer's and reader's errors name (`$.messages[1].content`), without the
//! data's own words.
//!
//! Dict keys are content too: a tool's parameter names, a `metadata` map, a `response_format`
//! schema, any dict a caller passes and every key of a decrypted response can be a name, an
//! identifier, a diagnosis. So a key is shown only when it is one of the chat protocol's own
//! field names ([`PROTOCOL_KEYS`]), and only where the protocol puts field names: below a
//! member whose keys the caller chooses ([`CALLER_NAMED`], [`FREE_FORM`]) no name is shown,
//! whatever it is. Any other key shows as its position among its dict's keys, counted from 1:
//! `<key 3 of 7>`, or `<key 3>` where the count is not known (the reader has not read the rest).
//! List indices and byte offsets are positions, shown as they are.

#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// The field names of the OpenAI chat-completions request and response (`chat.completion`),
/// the NOMYO `_metadata` and `tpm_attestation` fields (PROTOCOL.md sections 3 and 5), and the
/// JSON Schema keywords of a tool's `parameters` or a `response_format` schema: the public
/// vocabulary an error may name. Sorted (byte order), so that it is searched by bisection.
pub const PROTOCOL_KEYS: &[&str] = &[
    "$defs",
    "$ref",
    "_metadata",
    "accepted_prediction_tokens",
    "additionalProperties",
    "aik_pubkey_b64",
    "allOf",
    "annotations",
    "anyOf",
    "arguments",
    "attestation_verification",
    "audio",
    "audio_tokens",
    "available",
    "bytes",
    "cached_tokens",
    "choices",
    "completion_tokens",
    "completion_tokens_details",
    "const",
    "content",
    "core_dump_prevention",
    "created",
    "cuda_device",
    "data",
    "default",
    "definitions",
    "delta",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "description",
    "detail",
    "device_hash",
    "encryption_algorithm",
    "end_index",
    "enum",
    "examples",
    "expires_at",
    "file",
    "file_data",
    "file_id",
    "filename",
    "finish_reason",
    "format",
    "frequency_penalty",
    "function",
    "function_call",
    "functions",
    "id",
    "image_url",
    "include_usage",
    "index",
    "input_audio",
    "is_available",
    "is_encrypted",
    "items",
    "json_schema",
    "logit_bias",
    "logprobs",
    "maxItems",
    "maxLength",
    "max_completion_tokens",
    "max_tokens",
    "maximum",
    "memory_locking",
    "memory_protection",
    "message",
    "messages",
    "metadata",
    "minItems",
    "minLength",
    "minimum",
    "modalities",
    "model",
    "n",
    "name",
    "object",
    "oneOf",
    "parallel_tool_calls",
    "parameters",
    "pattern",
    "patternProperties",
    "payload_id",
    "payload_id_verified",
    "pcr_banks",
    "pcr_values",
    "platform",
    "prediction",
    "presence_penalty",
    "processed_at",
    "prompt_tokens",
    "prompt_tokens_details",
    "properties",
    "quote_b64",
    "reasoning",
    "reasoning_content",
    "reasoning_effort",
    "reasoning_tokens",
    "refusal",
    "rejected_prediction_tokens",
    "required",
    "response_format",
    "response_status",
    "role",
    "schema",
    "secure_zeroing",
    "security_tier",
    "seed",
    "service_tier",
    "signature_b64",
    "start_index",
    "stop",
    "store",
    "stream",
    "stream_options",
    "strict",
    "system_fingerprint",
    "temperature",
    "text",
    "title",
    "token",
    "tool_call_id",
    "tool_calls",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "total_tokens",
    "tpm_attestation",
    "transcript",
    "type",
    "url",
    "url_citation",
    "usage",
    "user",
    "web_search_options",
];

/// Members whose own keys the caller names (a schema's property and definition names, the
/// property names a dependency is keyed by, property-name patterns): their direct members'
/// keys are never shown; deeper down the protocol's names count again.
pub const CALLER_NAMED: &[&str] = &[
    "$defs",
    "definitions",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
    "properties",
];

/// Members that hold the caller's data as it is (a `metadata` map, an `arguments` object, a
/// schema's literal values): no key at any depth below them is shown.
pub const FREE_FORM: &[&str] = &[
    "arguments",
    "const",
    "default",
    "enum",
    "examples",
    "logit_bias",
    "metadata",
];

/// The longest name in [`PROTOCOL_KEYS`]: a longer key is not one of them, unread.
pub const MAX_PROTOCOL_KEY_LEN: usize = 26;

/// The protocol field name `key` is (its UTF-8 bytes), if it is one.
pub fn protocol_key(key: &[u8]) -> Option<&'static str> {
    if key.len() > MAX_PROTOCOL_KEY_LEN {
        return None;
    }
    PROTOCOL_KEYS
        .binary_search_by(|name| name.as_bytes().cmp(key))
        .ok()
        .map(|at| PROTOCOL_KEYS[at])
}

/// One level of a position in a JSON document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// An array element (from 0).
    Index(usize),
    /// A dict member.
    Member {
        /// Its key, when that is a protocol field name (`protocol_key`).
        key: Option<&'static str>,
        /// Its position among the dict's keys, from 1.
        ordinal: usize,
        /// How many keys the dict has, when known.
        of: Option<usize>,
    },
}

/// Where below the members already rendered a protocol key may be shown.
#[derive(Clone, Copy, PartialEq)]
enum Names {
    Shown,
    /// The next member's key is the caller's (below a `CALLER_NAMED` member).
    NextHidden,
    /// Below a `FREE_FORM` member: every key is the caller's.
    Hidden,
}

/// The path of `steps` (outermost first) as `$.messages[1].content`, keys shown only as
/// the module's rule allows.
pub fn render(steps: impl IntoIterator<Item = Step>) -> String {
    let mut text = String::from("$");
    let mut names = Names::Shown;
    for step in steps {
        match step {
            Step::Index(index) => {
                let _ = write!(text, "[{index}]");
            }
            Step::Member { key, ordinal, of } => {
                let shown = key.filter(|_| names == Names::Shown);
                match (shown, of) {
                    (Some(name), _) => {
                        let _ = write!(text, ".{name}");
                    }
                    (None, Some(count)) => {
                        let _ = write!(text, ".<key {ordinal} of {count}>");
                    }
                    (None, None) => {
                        let _ = write!(text, ".<key {ordinal}>");
                    }
                }
                names = match (names, shown) {
                    (Names::Hidden, _) => Names::Hidden,
                    (_, Some(name)) if FREE_FORM.contains(&name) => Names::Hidden,
                    (_, Some(name)) if CALLER_NAMED.contains(&name) => Names::NextHidden,
                    _ => Names::Shown,
                };
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(key: &str, ordinal: usize, of: usize) -> Step {
        Step::Member {
            key: protocol_key(key.as_bytes()),
            ordinal,
            of: Some(of),
        }
    }

    #[test]
    fn the_allowlist_is_sorted_unique_and_its_longest_name_is_the_bound() {
        assert!(PROTOCOL_KEYS.windows(2).all(|w| w[0] < w[1]), "not sorted");
        let longest = PROTOCOL_KEYS.iter().map(|k| k.len()).max();
        assert_eq!(longest, Some(MAX_PROTOCOL_KEY_LEN));
        for name in CALLER_NAMED.iter().chain(FREE_FORM) {
            assert_eq!(
                protocol_key(name.as_bytes()),
                Some(*name),
                "{name} is not listed"
            );
        }
    }

    #[test]
    fn only_protocol_field_names_are_recognised_exactly() {
        for name in PROTOCOL_KEYS {
            assert_eq!(protocol_key(name.as_bytes()), Some(*name));
        }
        for other in [
            "",
            "Content",
            "content ",
            "contents",
            "patient_name",
            "cont\0ent",
            "é",
        ] {
            assert_eq!(protocol_key(other.as_bytes()), None, "{other:?}");
        }
        assert_eq!(protocol_key(&[0xff; 5]), None);
        assert_eq!(protocol_key("a".repeat(10_000).as_bytes()), None);
    }

    #[test]
    fn protocol_keys_and_indices_are_shown() {
        let steps = [
            member("messages", 2, 3),
            Step::Index(1),
            member("content", 2, 2),
        ];
        assert_eq!(render(steps), "$.messages[1].content");
        assert_eq!(render([]), "$");
        assert_eq!(render([Step::Index(0), Step::Index(12)]), "$[0][12]");
    }

    #[test]
    fn any_other_key_shows_as_its_position() {
        let steps = [member("Jane Doe, HIV+", 3, 7), Step::Index(0)];
        assert_eq!(render(steps), "$.<key 3 of 7>[0]");
        let unknown_count = Step::Member {
            key: None,
            ordinal: 4,
            of: None,
        };
        assert_eq!(
            render([member("choices", 1, 1), unknown_count]),
            "$.choices.<key 4>"
        );
    }

    #[test]
    fn below_a_free_form_member_no_key_is_shown_at_any_depth() {
        for holder in FREE_FORM {
            let steps = [
                member(holder, 1, 2),
                member("content", 2, 3),
                Step::Index(0),
                member("role", 1, 1),
            ];
            assert_eq!(
                render(steps),
                format!("$.{holder}.<key 2 of 3>[0].<key 1 of 1>")
            );
        }
    }

    #[test]
    fn below_a_caller_named_member_one_level_of_keys_is_hidden() {
        // tools[0].function.parameters.properties.<a property named "name">.type
        let steps = [
            member("tools", 1, 2),
            Step::Index(0),
            member("function", 2, 2),
            member("parameters", 3, 3),
            member("properties", 2, 3),
            member("name", 5, 9),
            member("type", 1, 2),
        ];
        assert_eq!(
            render(steps),
            "$.tools[0].function.parameters.properties.<key 5 of 9>.type"
        );
        // A property named like a free-form holder is still a hidden name, not a holder.
        let steps = [
            member("properties", 1, 1),
            member("metadata", 1, 1),
            member("type", 1, 1),
        ];
        assert_eq!(render(steps), "$.properties.<key 1 of 1>.type");
        // Every member keyed by the caller's property names or patterns hides them alike.
        for holder in CALLER_NAMED {
            let steps = [
                member(holder, 1, 1),
                member("name", 1, 1),
                member("type", 1, 1),
            ];
            assert_eq!(render(steps), format!("$.{holder}.<key 1 of 1>.type"));
        }
        // An index between the holder and its members does not end the rule.
        let steps = [member("$defs", 1, 1), Step::Index(2), member("title", 1, 1)];
        assert_eq!(render(steps), "$.$defs[2].<key 1 of 1>");
    }
}
