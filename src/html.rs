//! How the server-rendered pages escape what they show: the escaper askama
//! applies to every value of an `.html` template (`askama.toml`). The
//! entities are html-escape's for quoted attributes (`&amp; &lt; &gt; &quot;
//! &#x27;`): safe in element text and in attribute values in either quote,
//! and the spelling the pages had before templates (askama's own escaper
//! writes numeric references, `&#60;` …).

use std::fmt;

/// The escaper of `.html` templates (primitives: any module's pages use it).
#[derive(Clone, Copy, Debug, Default)]
pub struct Entities;

impl askama::filters::Escaper for Entities {
    fn write_escaped_str<W: fmt::Write>(&self, mut dest: W, text: &str) -> fmt::Result {
        dest.write_str(&html_escape::encode_quoted_attribute(text))
    }
}

#[cfg(test)]
mod tests {
    use askama::filters::Escaper as _;

    use super::*;

    #[test]
    fn the_five_html_characters_become_entities_and_nothing_else_changes() {
        let mut out = String::new();
        Entities.write_escaped_str(&mut out, "a&b <c> \"d\" 'e' /f é").unwrap();
        assert_eq!(out, "a&amp;b &lt;c&gt; &quot;d&quot; &#x27;e&#x27; /f é");
    }
}
