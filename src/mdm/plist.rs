//! A small reader for XML property lists (Info.plist, `codesign --entitlements :-`).
//!
//! Owns the subset the importers need: `dict`, `array`, `string`, `true`/`false`,
//! `integer`; `data`, `date` and `real` are accepted and their content skipped.
//! Invariants: never panics; nesting is bounded by [`MAX_PLIST_DEPTH`]; text before
//! the XML prolog (codesign's blob header, `Executable=` lines) is ignored; binary
//! plists are refused with a hint to convert them.

use super::{line_col, MdmError};

/// Deepest nesting of dicts and arrays accepted (32): real Info.plist and entitlement
/// files nest fewer than 10 levels; the bound keeps recursion shallow.
pub const MAX_PLIST_DEPTH: usize = 32;

/// A parsed plist value.
#[derive(Clone, Debug, PartialEq)]
pub enum PlistValue {
    /// `<dict>`, in document order.
    Dict(Vec<(String, PlistValue)>),
    /// `<array>`.
    Array(Vec<PlistValue>),
    /// `<string>`, entities decoded.
    String(String),
    /// `<true/>` or `<false/>`.
    Bool(bool),
    /// `<integer>`.
    Integer(i64),
    /// `<data>`, base64-decoded (a DDM status report travels in one).
    Data(Vec<u8>),
    /// `<date>` or `<real>`: accepted, content not kept.
    Skipped,
}

impl PlistValue {
    /// The value of `key` in a dict (first occurrence); `None` for other values.
    pub fn get(&self, key: &str) -> Option<&PlistValue> {
        match self {
            PlistValue::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string, for `<string>`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PlistValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The strings of an array (non-strings skipped); empty for other values.
    pub fn strings(&self) -> Vec<&str> {
        match self {
            PlistValue::Array(items) => items.iter().filter_map(PlistValue::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses an XML plist; `origin` names it in errors (with line and column).
pub fn parse_plist(bytes: &[u8], origin: &str) -> Result<PlistValue, MdmError> {
    let fail = |text: &str, at: usize, msg: String| {
        let (line, column) = line_col(text, at);
        MdmError::Syntax {
            origin: origin.into(),
            line,
            column,
            msg,
        }
    };
    if bytes.starts_with(b"bplist") {
        return Err(fail(
            "",
            0,
            "binary plist; convert it with `plutil -convert xml1 FILE`".into(),
        ));
    }
    let start = find(bytes, b"<?xml")
        .or_else(|| find(bytes, b"<plist"))
        .ok_or_else(|| fail("", 0, "no XML plist found".into()))?;
    let tail = bytes.get(start..).unwrap_or_default();
    let text = std::str::from_utf8(tail).map_err(|e| {
        let ok = tail.get(..e.valid_up_to()).unwrap_or_default();
        let ok = std::str::from_utf8(ok).unwrap_or_default();
        fail(ok, ok.len(), "not UTF-8".into())
    })?;
    let mut p = Parser { text, pos: 0 };
    p.document().map_err(|msg| fail(text, p.pos, msg))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Skips whitespace, comments, processing instructions and DOCTYPE.
    fn skip_misc(&mut self) -> Result<(), String> {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            let end = if trimmed.starts_with("<?") {
                "?>"
            } else if trimmed.starts_with("<!--") {
                "-->"
            } else if trimmed.starts_with("<!DOCTYPE") {
                ">"
            } else {
                return Ok(());
            };
            let len = trimmed
                .find(end)
                .ok_or_else(|| format!("unterminated markup, expected {end:?}"))?;
            self.pos += len + end.len();
        }
    }

    fn document(&mut self) -> Result<PlistValue, String> {
        self.skip_misc()?;
        let (name, empty) = self.open_tag()?;
        if name != "plist" || empty {
            return Err(format!("expected <plist>, found <{name}>"));
        }
        self.skip_misc()?;
        let value = self.value(0)?;
        self.skip_misc()?;
        self.close_tag("plist")?;
        Ok(value)
    }

    /// Reads `<name attrs...>` or `<name/>`; returns the name and whether it is empty.
    fn open_tag(&mut self) -> Result<(&'a str, bool), String> {
        let rest = self.rest();
        let inner = rest
            .strip_prefix('<')
            .filter(|r| !r.starts_with('/'))
            .ok_or("expected an element")?;
        let end = inner.find('>').ok_or("unterminated tag")?;
        let tag = inner.get(..end).unwrap_or_default();
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let name = tag.split_whitespace().next().unwrap_or_default();
        self.pos += end + 2;
        Ok((name, empty))
    }

    fn close_tag(&mut self, name: &str) -> Result<(), String> {
        let rest = self.rest();
        let after = rest
            .strip_prefix("</")
            .and_then(|r| r.strip_prefix(name))
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('>'))
            .ok_or_else(|| format!("expected </{name}>"))?;
        self.pos += rest.len() - after.len();
        Ok(())
    }

    /// Reads character data up to the next tag, decoding entities and CDATA.
    fn text(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let rest = self.rest();
            if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                let end = cdata.find("]]>").ok_or("unterminated CDATA")?;
                out.push_str(cdata.get(..end).unwrap_or_default());
                self.pos += "<![CDATA[".len() + end + 3;
                continue;
            }
            let end = rest.find('<').ok_or("unexpected end of document")?;
            if end == 0 {
                return Ok(out);
            }
            decode_entities(rest.get(..end).unwrap_or_default(), &mut out)?;
            self.pos += end;
        }
    }

    fn value(&mut self, depth: usize) -> Result<PlistValue, String> {
        if depth >= MAX_PLIST_DEPTH {
            return Err(format!("nested deeper than {MAX_PLIST_DEPTH}"));
        }
        let (name, empty) = self.open_tag()?;
        let value = match name {
            "true" | "false" => PlistValue::Bool(name == "true"),
            "dict" | "array" if empty => match name {
                "dict" => PlistValue::Dict(Vec::new()),
                _ => PlistValue::Array(Vec::new()),
            },
            "dict" => {
                let mut entries = Vec::new();
                loop {
                    self.skip_misc()?;
                    if self.rest().starts_with("</") {
                        break;
                    }
                    let start = self.pos;
                    let (tag, key_empty) = self.open_tag()?;
                    if tag != "key" {
                        self.pos = start;
                        return Err(format!("expected <key> in <dict>, found <{tag}>"));
                    }
                    let key = if key_empty {
                        String::new()
                    } else {
                        let k = self.text()?;
                        self.close_tag("key")?;
                        k
                    };
                    self.skip_misc()?;
                    entries.push((key, self.value(depth + 1)?));
                }
                PlistValue::Dict(entries)
            }
            "array" => {
                let mut items = Vec::new();
                loop {
                    self.skip_misc()?;
                    if self.rest().starts_with("</") {
                        break;
                    }
                    items.push(self.value(depth + 1)?);
                }
                PlistValue::Array(items)
            }
            "string" if empty => PlistValue::String(String::new()),
            "string" => PlistValue::String(self.text()?),
            "integer" => {
                let start = self.pos;
                let t = if empty { String::new() } else { self.text()? };
                let n = t.trim();
                let parsed = match n.strip_prefix("0x") {
                    Some(hex) => i64::from_str_radix(hex, 16).ok(),
                    None => n.parse().ok(),
                };
                match parsed {
                    Some(n) => PlistValue::Integer(n),
                    None => {
                        self.pos = start;
                        return Err(format!("invalid integer {n:?}"));
                    }
                }
            }
            "data" => {
                let t = if empty { String::new() } else { self.text()? };
                let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                use base64::Engine as _;
                match base64::engine::general_purpose::STANDARD.decode(compact.as_bytes()) {
                    Ok(b) => PlistValue::Data(b),
                    Err(e) => return Err(format!("invalid <data>: {e}")),
                }
            }
            "date" | "real" => {
                if !empty {
                    self.text()?;
                }
                PlistValue::Skipped
            }
            other => return Err(format!("unsupported element <{other}>")),
        };
        if !empty {
            if !matches!(
                name,
                "dict" | "array" | "string" | "integer" | "data" | "date" | "real"
            ) {
                // <true></true> is legal if unusual.
                self.skip_misc()?;
            }
            self.close_tag(name)?;
        }
        Ok(value)
    }
}

/// Appends `raw` to `out` with XML entities decoded.
fn decode_entities(raw: &str, out: &mut String) -> Result<(), String> {
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let semi = after.find(';').ok_or("unterminated entity")?;
        let name = after.get(..semi).unwrap_or_default();
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{name};"))?
            }
        };
        out.push(c);
        rest = after.get(semi + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<PlistValue, String> {
        parse_plist(s.as_bytes(), "t.plist").map_err(|e| e.to_string())
    }

    #[test]
    fn parses_the_subset() {
        let v = parse(
            r#"Executable=/Applications/X.app/X
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<!-- a comment -->
	<key>s</key><string>a &amp; b &#x263A;<![CDATA[<raw>]]></string>
	<key>e</key><string/>
	<key>t</key><true/>
	<key>f</key><false/>
	<key>i</key><integer>-42</integer>
	<key>d</key><data>AAEC
	AwQ=</data>
	<key>a</key><array><string>x</string><integer>0x10</integer><array/></array>
	<key>n</key><dict/>
</dict>
</plist>
"#,
        )
        .unwrap();
        assert_eq!(
            v.get("s").and_then(PlistValue::as_str),
            Some("a & b ☺<raw>")
        );
        assert_eq!(v.get("e").and_then(PlistValue::as_str), Some(""));
        assert_eq!(v.get("t"), Some(&PlistValue::Bool(true)));
        assert_eq!(v.get("f"), Some(&PlistValue::Bool(false)));
        assert_eq!(v.get("i"), Some(&PlistValue::Integer(-42)));
        assert_eq!(v.get("d"), Some(&PlistValue::Data(vec![0, 1, 2, 3, 4])));
        assert_eq!(v.get("a").map(PlistValue::strings), Some(vec!["x"]));
        assert_eq!(v.get("n"), Some(&PlistValue::Dict(vec![])));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            parse("<plist>\n<dict>\n  <string>x</string>\n</dict></plist>").unwrap_err(),
            "t.plist:3:3: expected <key> in <dict>, found <string>"
        );
        assert_eq!(
            parse("<plist><integer>12a</integer></plist>").unwrap_err(),
            "t.plist:1:17: invalid integer \"12a\""
        );
        assert!(parse("bplist00\u{0}\u{1}")
            .unwrap_err()
            .contains("plutil -convert xml1"));
        assert!(parse("hello").unwrap_err().contains("no XML plist found"));
        assert!(parse("<plist><string>a &bogus; b</string></plist>")
            .unwrap_err()
            .contains("unknown entity &bogus;"));
        assert!(parse("<plist><dict><key>a</key>").is_err());
        assert!(parse("<plist><foo/></plist>")
            .unwrap_err()
            .contains("unsupported element <foo>"));
        let deep = format!(
            "<plist>{}{}</plist>",
            "<array>".repeat(40),
            "</array>".repeat(40)
        );
        assert!(parse(&deep).unwrap_err().contains("nested deeper than 32"));
        let bad = parse_plist(b"<plist><string>\xff</string></plist>", "t.plist").unwrap_err();
        assert_eq!(bad.to_string(), "t.plist:1:16: not UTF-8");
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_plist(&bytes, "p");
        }

        #[test]
        fn never_panics_on_markup(s in "(<plist>|<dict>|</dict>|<key>k</key>|<array>|</array>|<string>|</string>|<true/>|<integer>|</integer>|&amp;|&#x|<!--|-->|<\\?|\\?>|[a-z0-9 ;<>/]){0,40}") {
            let _ = parse_plist(s.as_bytes(), "p");
        }
    }
}
