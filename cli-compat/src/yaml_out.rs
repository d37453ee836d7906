//! Writing YAML the way Ruby's `to_yaml` (Psych) writes it, for the two files af writes:
//! `~/.af_aliases` and a saved `manifest.yml`.

use crate::json::Json;

/// `value.to_yaml`: a `---` document.
pub(crate) fn to_yaml(value: &Json) -> String {
    match value {
        Json::Object(pairs) if pairs.is_empty() => "--- {}\n".into(),
        Json::Array(items) if items.is_empty() => "--- []\n".into(),
        Json::Object(_) | Json::Array(_) => {
            let mut out = String::from("---\n");
            emit(value, 0, &mut out);
            out
        }
        scalar => format!("--- {}\n", scalar_text(scalar)),
    }
}

fn emit(value: &Json, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Json::Object(pairs) => {
            for (key, value) in pairs {
                out.push_str(&pad);
                out.push_str(&scalar(key));
                out.push(':');
                match value {
                    Json::Object(inner) if !inner.is_empty() => {
                        out.push('\n');
                        emit(value, indent + 2, out);
                    }
                    Json::Array(items) if !items.is_empty() => {
                        out.push('\n');
                        emit(value, indent, out);
                    }
                    Json::Null => out.push('\n'),
                    other => {
                        out.push(' ');
                        out.push_str(&scalar_text(other));
                        out.push('\n');
                    }
                }
            }
        }
        Json::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Json::Object(inner) if !inner.is_empty() => {
                        // The first pair on the dash's line, the rest under it.
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    Json::Null => out.push('\n'),
                    other => {
                        out.push(' ');
                        out.push_str(&scalar_text(other));
                        out.push('\n');
                    }
                }
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar_text(other));
            out.push('\n');
        }
    }
}

fn scalar_text(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::Bool(b) => b.to_string(),
        Json::Int(i) => i.to_string(),
        Json::Float(f) => crate::json::ruby_float(*f),
        Json::Str(s) => scalar(s),
        Json::Object(_) => "{}".into(),
        Json::Array(_) => "[]".into(),
    }
}

/// A string as Psych chooses its style: double quotes for `y`/`n` and for text that starts
/// with a non-word character; single quotes for text that would read back as something other
/// than a string, or that plain style cannot hold; plain otherwise.
pub(crate) fn scalar(text: &str) -> String {
    if matches!(text, "y" | "Y" | "n" | "N") {
        return double_quoted(text);
    }
    let starts_with_word = text
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_');
    if !text.is_empty() && !starts_with_word && !text.contains('"') {
        return double_quoted(text);
    }
    if text.contains('\n') || text.chars().any(|c| c.is_control() && c != '\t') {
        return double_quoted(text);
    }
    let not_a_string = text.is_empty()
        || matches!(
            text,
            "~" | "null"
                | "Null"
                | "NULL"
                | "true"
                | "True"
                | "TRUE"
                | "false"
                | "False"
                | "FALSE"
                | "yes"
                | "Yes"
                | "YES"
                | "no"
                | "No"
                | "NO"
                | "on"
                | "On"
                | "ON"
                | "off"
                | "Off"
                | "OFF"
        )
        || looks_numeric(text);
    let plain_impossible = text.contains(": ")
        || text.contains(" #")
        || text.ends_with(':')
        || text.ends_with(' ')
        || text.starts_with(' ')
        || !starts_with_word;
    if not_a_string || plain_impossible {
        format!("'{}'", text.replace('\'', "''"))
    } else {
        text.to_owned()
    }
}

fn looks_numeric(text: &str) -> bool {
    let t = text.replace('_', "");
    t.parse::<i64>().is_ok()
        || (t.parse::<f64>().is_ok() && t.chars().any(|c| c.is_ascii_digit()))
        || t.strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

fn double_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_as_psych_writes_it() {
        let manifest = Json::parse(
            r#"{"applications":{".":{"name":"cr","framework":{"name":"node","info":{"mem":"64M","description":"Node.js Application","exec":null}},"url":"${name}.${target-base}","mem":"64M","instances":1,"services":{"mysql-1a2b":{"type":"mysql"}},"infra":"aws","runtime":null,"command":"node x.js -p 1"}}}"#,
        )
        .unwrap();
        assert_eq!(
            to_yaml(&manifest),
            "---\napplications:\n  \".\":\n    name: cr\n    framework:\n      name: node\n      info:\n        mem: 64M\n        description: Node.js Application\n        exec:\n    url: \"${name}.${target-base}\"\n    mem: 64M\n    instances: 1\n    services:\n      mysql-1a2b:\n        type: mysql\n    infra: aws\n    runtime:\n    command: node x.js -p 1\n"
        );
    }

    #[test]
    fn scalars_as_psych_quotes_them() {
        assert_eq!(scalar("/abs/path"), "\"/abs/path\"");
        assert_eq!(scalar("yes"), "'yes'");
        assert_eq!(scalar("n"), "\"n\"");
        assert_eq!(scalar("12"), "'12'");
        assert_eq!(scalar(""), "''");
        assert_eq!(scalar("a b"), "a b");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("a:b"), "a:b");
        assert_eq!(to_yaml(&Json::object()), "--- {}\n");
    }
}
