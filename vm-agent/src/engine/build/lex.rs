//! Dockerfile word processing (moby's `shell.Lex`): environment substitution (`$a`, `${a}`,
//! `${a:-default}`, `${a:+alternative}`, `${a-default}`, `${a+alternative}`), quotes (single:
//! literal; double: substitution inside) and the escape character.

use std::collections::BTreeMap;

/// The variables in effect (ARG and ENV values).
pub type Vars = BTreeMap<String, String>;

/// One word: substituted, quotes removed, not split.
pub fn word(text: &str, vars: &Vars, escape: char) -> Result<String, String> {
    Ok(process(text, vars, escape, false)?.concat())
}

/// Splits on whitespace outside quotes, keeping quotes and escapes as they are (ENV and LABEL
/// split their `k=v` pairs first, then substitute each).
pub fn split_raw(text: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            Some(_) if c == escape => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            Some(_) => cur.push(c),
            None if c == escape => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                cur.push(c);
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(format!("unmatched quote in: {text}"));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Whitespace-separated words, each substituted with quotes removed.
pub fn words(text: &str, vars: &Vars, escape: char) -> Result<Vec<String>, String> {
    process(text, vars, escape, true)
}

fn process(text: &str, vars: &Vars, escape: char, split: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if split && c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        if c == escape {
            i += 1;
            if let Some(&n) = chars.get(i) {
                cur.push(n);
            }
            i += 1;
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or("unexpected end of statement while looking for matching single-quote")?;
            cur.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c == '"' {
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err("unexpected end of statement while looking for matching double-quote".into());
                };
                if d == '"' {
                    i += 1;
                    break;
                }
                if d == escape && (matches!(chars.get(i + 1), Some('"' | '$')) || chars.get(i + 1) == Some(&escape)) {
                    cur.push(chars[i + 1]);
                    i += 2;
                } else if d == '$' {
                    i = dollar(&chars, i, vars, &mut cur)?;
                } else {
                    cur.push(d);
                    i += 1;
                }
            }
        } else if c == '$' {
            let mut value = String::new();
            i = dollar(&chars, i, vars, &mut value)?;
            for v in value.chars() {
                // Unquoted, a value's whitespace separates words (as in a shell).
                if split && v.is_whitespace() {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                } else {
                    cur.push(v);
                }
            }
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// Expands the variable at `chars[i] == '$'`; returns the index after it.
fn dollar(chars: &[char], i: usize, vars: &Vars, out: &mut String) -> Result<usize, String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let mut j = i + 2;
            let start = j;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            if name.is_empty() {
                return Err("missing variable name in ${}".into());
            }
            let value = vars.get(&name);
            match chars.get(j) {
                Some('}') => {
                    out.push_str(value.map(String::as_str).unwrap_or_default());
                    Ok(j + 1)
                }
                Some(':') | Some('-') | Some('+') => {
                    let colon = chars[j] == ':';
                    if colon {
                        j += 1;
                    }
                    let op = *chars.get(j).ok_or("unexpected end of statement in ${}")?;
                    let mut depth = 0;
                    let word_start = j + 1;
                    let mut k = word_start;
                    while k < chars.len() {
                        match chars[k] {
                            '{' => depth += 1,
                            '}' if depth == 0 => break,
                            '}' => depth -= 1,
                            _ => {}
                        }
                        k += 1;
                    }
                    if k >= chars.len() {
                        return Err("missing '}' in variable substitution".into());
                    }
                    let inner: String = chars[word_start..k].iter().collect();
                    let set = if colon { value.is_some_and(|v| !v.is_empty()) } else { value.is_some() };
                    let expanded = match op {
                        '-' if set => value.cloned().unwrap_or_default(),
                        '-' => word(&inner, vars, '\\')?,
                        '+' if set => word(&inner, vars, '\\')?,
                        '+' => String::new(),
                        '?' if set => value.cloned().unwrap_or_default(),
                        '?' => {
                            return Err(format!(
                                "{name}: {}",
                                if inner.is_empty() { "is not allowed to be unset" } else { &inner }
                            ))
                        }
                        other => return Err(format!("unsupported modifier ({other}) in substitution")),
                    };
                    out.push_str(&expanded);
                    Ok(k + 1)
                }
                _ => Err(format!("missing '}}' in ${{{name}")),
            }
        }
        Some(&c) if name_char(c) => {
            let mut j = i + 1;
            while j < chars.len() && name_char(chars[j]) {
                j += 1;
            }
            let name: String = chars[i + 1..j].iter().collect();
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or_default());
            Ok(j)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars::from([("a".into(), "one".into()), ("empty".into(), String::new()), ("sp".into(), "x y".into())])
    }

    #[test]
    fn substitution_forms() {
        let v = vars();
        let w = |t: &str| word(t, &v, '\\').unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w("$a/${a}/${missing:-dflt}/${a:-dflt}/${a:+alt}/${missing:+alt}"), "one/one/dflt/one/alt/");
        assert_eq!(w("${empty:-dflt}|${empty-dflt}|${empty:+alt}|${empty+alt}"), "dflt|||alt");
        assert_eq!(w("'$a' \"$a\" \\$a"), "$a one $a");
        assert_eq!(w("${missing:-${a}x}"), "onex");
        assert_eq!(w("cost: $5 and $"), "cost:  and $");
    }

    #[test]
    fn words_split_outside_quotes_only() {
        let v = vars();
        assert_eq!(
            words("a=\"1 2\" b=$sp 'c d'", &v, '\\').unwrap_or_default(),
            vec!["a=1 2".to_string(), "b=x".into(), "y".into(), "c d".into()]
        );
        assert!(words("'open", &v, '\\').is_err());
        let pairs = split_raw("b=$sp c=\"q r\" d='$a'", '\\').unwrap_or_default();
        let expanded: Vec<String> = pairs.iter().map(|p| word(p, &v, '\\').unwrap_or_default()).collect();
        assert_eq!(expanded, vec!["b=x y".to_string(), "c=q r".into(), "d=$a".into()]);
        assert!(word("${a", &v, '\\').is_err());
    }
}
