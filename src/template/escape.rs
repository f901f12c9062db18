//! Escaping of an event's text for each [`Target`], so it shows as the text it is.
//!
//! Slack: only `&`, `<` and `>` (Slack's documented rule; `<` is what starts links and
//! mentions such as `<!channel>`). Discord markdown: every character that can start markup
//! is backslash-escaped, and an `@` is followed by a zero-width space so `@everyone` cannot
//! read as a mention even where mentions are parsed; a masked link's label, where Discord
//! shows escapes as written, is left unescaped when it holds no markup and is not made a
//! link when it does. Adaptive Card markdown knows only
//! emphasis, lists and links, and its clients honour backslash escapes unevenly, so only the
//! characters that make emphasis and links are escaped there. HTML: the five characters that
//! matter in text and attribute values. Every target drops the Unicode bidirectional
//! controls (embeddings, overrides, isolates: "Trojan Source"), with which an event could make
//! its text read in another order than it was written.

use super::Target;

/// Characters that start or end markup in Discord's markdown.
const DISCORD: &[char] = &[
    '\\', '*', '_', '~', '`', '|', '>', '<', '#', '-', '[', ']', '(', ')',
];
/// Characters that make emphasis or links in Adaptive Card markdown.
const TEAMS: &[char] = &['\\', '*', '_', '[', ']', '~'];

/// Zero-width space, placed after `@` so no mention can form.
const ZWSP: char = '\u{200B}';

/// U+202A to U+202E and U+2066 to U+2069: they reorder how the text around them shows.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` escaped for `target`.
pub fn escape(target: Target, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let text = &*strip_bidi_controls(text);
    match target {
        Target::Slack => {
            for c in text.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    c => out.push(c),
                }
            }
        }
        Target::Discord | Target::Teams => {
            let special = if target == Target::Discord {
                DISCORD
            } else {
                TEAMS
            };
            let chars: Vec<char> = text.chars().collect();
            for (i, &c) in chars.iter().enumerate() {
                // Teams' mobile clients show escapes as written: an `_` between letters or
                // digits (`quota_exceed`), which makes no emphasis, is left alone there.
                let inner_underscore =
                    target == Target::Teams && c == '_' && between_word_characters(&chars, i);
                if special.contains(&c) && !inner_underscore {
                    out.push('\\');
                    out.push(c);
                } else if c == '@' && target == Target::Discord {
                    out.push(c);
                    out.push(ZWSP);
                } else {
                    out.push(c);
                }
            }
        }
        Target::Html => {
            for c in text.chars() {
                match c {
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '"' => out.push_str("&quot;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
        }
        Target::Plain => out.push_str(text),
    }
    out
}

/// Characters Discord would read as markup inside a masked link's label, where it shows
/// backslash escapes as written instead of honouring them.
const DISCORD_LABEL_MARKUP: &[char] = &['[', ']', '\\', '<', '>', '`', '*', '~', '|'];

/// `text` as the label of a Discord masked link (`[label](url)`), or `None` when it holds
/// markup that only an escape could neutralise there. An `@` still gets its zero-width space.
pub fn discord_link_label(text: &str) -> Option<String> {
    if text.contains(DISCORD_LABEL_MARKUP) || has_edge_underscore(text) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    for c in strip_bidi_controls(text).chars() {
        out.push(c);
        if c == '@' {
            out.push(ZWSP);
        }
    }
    Some(out)
}

/// Whether an `_` in `text` touches something other than a letter or digit: there it can
/// open or close emphasis (`_config_`, `__init__`); between letters (`my_repo`) it cannot.
fn has_edge_underscore(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars
        .iter()
        .enumerate()
        .any(|(i, &c)| c == '_' && !between_word_characters(&chars, i))
}

/// Whether `chars[i]` has a letter or digit on both sides: an `_` there (`my_repo`) cannot
/// open or close emphasis in the markdown of Discord or Teams.
fn between_word_characters(chars: &[char], i: usize) -> bool {
    let word = |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric());
    word(i.checked_sub(1).and_then(|j| chars.get(j))) && word(chars.get(i + 1))
}

/// `text` without bidirectional controls; borrowed when it has none (nearly always).
fn strip_bidi_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(is_bidi_control) {
        text.chars().filter(|c| !is_bidi_control(*c)).collect()
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
