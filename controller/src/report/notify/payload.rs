//! What a webhook receives: the event as JSON, or the one key a chat service reads.

use bytes::Bytes;
use serde_json::json;

use super::Event;

/// Discord refuses a message whose `content` is longer than this (in characters).
const DISCORD_MAX_CHARS: usize = 2000;

/// The body every webhook gets (`--notify-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PayloadFormat {
    /// The whole event (object, kind, reason, message, specHash, time, text).
    #[default]
    Json,
    /// `{"text": …}`: Slack incoming webhooks, and Mattermost's and others' Slack-compatible
    /// ones.
    Slack,
    /// `{"content": …}` (at most 2000 characters): Discord webhooks.
    Discord,
}

impl PayloadFormat {
    /// The JSON body for `event`.
    pub fn body(self, event: &Event) -> Bytes {
        let value = match self {
            PayloadFormat::Json => {
                return Bytes::from(serde_json::to_vec(event).expect("events serialize"));
            }
            PayloadFormat::Slack => json!({ "text": event.text }),
            PayloadFormat::Discord => {
                json!({ "content": truncate(&event.text, DISCORD_MAX_CHARS) })
            }
        };
        Bytes::from(value.to_string())
    }
}

/// At most `max` characters, the last one `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some(_) => {
            let mut cut: String = text.chars().take(max - 1).collect();
            cut.push('…');
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::report::notify::EventKind;

    fn parsed(format: PayloadFormat, event: &Event) -> Value {
        serde_json::from_slice(&format.body(event)).unwrap()
    }

    #[test]
    fn each_format_has_the_key_its_receiver_reads() {
        let event = Event::new(
            EventKind::RolledBack,
            "service/web",
            "RolledBack",
            "task: No such image\nsecond line",
            Some("h1".into()),
        );
        let text =
            "swarm-operator: service/web rolledBack (RolledBack): task: No such image second line";
        assert_eq!(event.text, text, "one line: object, event, reason, message");
        assert_eq!(
            parsed(PayloadFormat::Slack, &event),
            json!({ "text": text })
        );
        assert_eq!(
            parsed(PayloadFormat::Discord, &event),
            json!({ "content": text })
        );
        let whole = parsed(PayloadFormat::Json, &event);
        assert_eq!(whole["kind"], "rolledBack");
        assert_eq!(whole["specHash"], "h1");
        assert_eq!(whole["text"], text);
    }

    #[test]
    fn discord_content_is_cut_at_2000_characters() {
        let event = Event::new(
            EventKind::SpecError,
            "a.yaml",
            "SpecError",
            "é".repeat(3000),
            None,
        );
        let body = parsed(PayloadFormat::Discord, &event);
        let content = body["content"].as_str().unwrap();
        assert_eq!(content.chars().count(), 2000);
        assert!(
            content.ends_with("é…"),
            "{}",
            &content[content.len() - 10..]
        );
        let short = Event::new(EventKind::Pruned, "service/a", "SpecRemoved", "gone", None);
        assert_eq!(
            parsed(PayloadFormat::Discord, &short)["content"],
            "swarm-operator: service/a pruned (SpecRemoved): gone"
        );
    }
}
