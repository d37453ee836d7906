//! af's prompts, as the `interact` 0.4 library asks them: `Question [default]: `, the answer
//! read a character at a time and echoed to stdout (so a piped answer shows in the output), an
//! empty answer taking the default, choices matched by exact text, number or prefix.
//!
//! One deliberate difference: at the end of input with no usable answer, interact asks again
//! forever (af with `-n` and no start command prints `Start Command: ` until killed); here the
//! question fails instead.

use std::io::BufRead;

use crate::error::Failure;
use crate::output::Out;

/// A question's default, which also decides how the answer is typed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AskDefault {
    /// No default at all: an empty answer asks again.
    Absent,
    /// `:default => nil`: an empty answer is `nil`, and nothing is shown.
    Nil,
    /// `[Yn]` / `[yN]`: the answer is yes when it starts with `y` or `Y`.
    Bool(bool),
    /// A number: the answer is read with Ruby's `to_i`.
    Int(i64),
    /// Shown as ` [text]`.
    Text(String),
}

/// An answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    Nil,
    Bool(bool),
    Int(i64),
    Text(String),
}

impl Answer {
    pub(crate) fn text(self) -> Option<String> {
        match self {
            Answer::Text(s) => Some(s),
            Answer::Int(i) => Some(i.to_string()),
            Answer::Bool(b) => Some(b.to_string()),
            Answer::Nil => None,
        }
    }

    pub(crate) fn yes(&self) -> bool {
        matches!(self, Answer::Bool(true))
    }
}

/// One question.
#[derive(Clone, Debug)]
pub(crate) struct Ask {
    question: String,
    default: AskDefault,
    choices: Option<Vec<String>>,
    indexed: bool,
    echo: Option<char>,
}

impl Ask {
    pub(crate) fn new(question: impl Into<String>) -> Ask {
        Ask {
            question: question.into(),
            default: AskDefault::Absent,
            choices: None,
            indexed: false,
            echo: None,
        }
    }

    pub(crate) fn default(mut self, default: AskDefault) -> Ask {
        self.default = default;
        self
    }

    pub(crate) fn yes_no(self, default: bool) -> Ask {
        self.default(AskDefault::Bool(default))
    }

    pub(crate) fn choices(mut self, choices: Vec<String>) -> Ask {
        self.choices = Some(choices);
        self
    }

    pub(crate) fn indexed(mut self) -> Ask {
        self.indexed = true;
        self
    }

    /// Echo this character instead of what is typed (passwords).
    pub(crate) fn echo(mut self, with: char) -> Ask {
        self.echo = Some(with);
        self
    }

    /// Asks until the answer is acceptable.
    pub(crate) fn run(&self, input: &mut dyn BufRead, out: &Out) -> Result<Answer, Failure> {
        if let Some(choices) = &self.choices
            && self.indexed
        {
            for (i, choice) in choices.iter().enumerate() {
                out.puts_raw(&format!("{}: {choice}", i + 1));
            }
        }
        loop {
            self.prompt(out);
            let line = read_line(input, out, self.echo)?;
            out.print_raw("\n");
            match self.answered(&line.text, out) {
                Some(answer) => return Ok(answer),
                None if line.at_eof => {
                    return Err(Failure::message(format!(
                        "Error: no answer to '{}' before the end of input",
                        self.question
                    )));
                }
                None => {}
            }
        }
    }

    fn prompt(&self, out: &Out) {
        let mut text = self.question.clone();
        if let Some(choices) = &self.choices
            && !self.indexed
        {
            text.push_str(&format!(" ({})", choices.join(", ")));
        }
        match &self.default {
            AskDefault::Bool(true) => text.push_str(" [Yn]"),
            AskDefault::Bool(false) => text.push_str(" [yN]"),
            AskDefault::Absent | AskDefault::Nil => {}
            AskDefault::Int(i) => text.push_str(&format!(" [{i}]")),
            AskDefault::Text(t) => text.push_str(&format!(" [{t}]")),
        }
        text.push_str(": ");
        out.print_raw(&text);
    }

    /// interact's `answered`: `None` to ask again.
    fn answered(&self, answer: &str, out: &Out) -> Option<Answer> {
        if answer.is_empty() {
            return match &self.default {
                AskDefault::Absent => None,
                AskDefault::Nil => Some(Answer::Nil),
                AskDefault::Bool(b) => Some(Answer::Bool(*b)),
                AskDefault::Int(i) => Some(Answer::Int(*i)),
                AskDefault::Text(t) => Some(Answer::Text(t.clone())),
            };
        }
        if let Some(choices) = &self.choices {
            // interact collects the *answer* (not the choice) for every choice it prefixes.
            let mut matches = Vec::new();
            for choice in choices {
                if choice == answer {
                    return Some(Answer::Text(choice.clone()));
                } else if choice.starts_with(answer) {
                    matches.push(answer.to_owned());
                }
            }
            let trimmed = answer.trim();
            if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
                let index: usize = trimmed.parse().unwrap_or(0);
                if index >= 1
                    && let Some(choice) = choices.get(index - 1)
                {
                    return Some(Answer::Text(choice.clone()));
                }
            }
            return match matches.len() {
                1 => Some(Answer::Text(matches.remove(0))),
                0 => {
                    out.puts_raw("Unknown answer, please try again!");
                    None
                }
                _ => {
                    out.puts_raw(&format!("Please disambiguate: {}?", matches.join(" or ")));
                    None
                }
            };
        }
        Some(match &self.default {
            AskDefault::Int(_) => Answer::Int(ruby_to_i(answer)),
            AskDefault::Bool(_) => Answer::Bool(answer.to_uppercase().starts_with('Y')),
            _ => Answer::Text(answer.to_owned()),
        })
    }
}

/// Ruby's `String#to_i`: leading blanks, a sign, digits (and `_` between them); 0 otherwise.
pub(crate) fn ruby_to_i(text: &str) -> i64 {
    let t = text.trim_start();
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut value: i64 = 0;
    let mut last_was_digit = false;
    for b in rest.bytes() {
        match b {
            b'0'..=b'9' => {
                value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
                last_was_digit = true;
            }
            b'_' if last_was_digit => last_was_digit = false,
            _ => break,
        }
    }
    if negative { -value } else { value }
}

struct Line {
    text: String,
    at_eof: bool,
}

/// Escape sequences interact knows (arrows, delete, home, end): swallowed whole.
const ESCAPES: &[&str] = &[
    "[A", "H", "[B", "P", "[C", "M", "[D", "K", "[3~", "S", "[H", "G", "[F", "O", "[Z",
];

/// Reads one answer a character at a time, echoing as interact does.
fn read_line(input: &mut dyn BufRead, out: &Out, echo: Option<char>) -> Result<Line, Failure> {
    let mut answer = String::new();
    let mut escape: Option<String> = None;
    loop {
        let Some(c) = read_char(input) else {
            // End of input ends the answer (interact waits forever when it is not empty).
            return Ok(Line {
                text: answer,
                at_eof: true,
            });
        };
        if let Some(sequence) = &mut escape {
            sequence.push(c);
            if ESCAPES.contains(&sequence.as_str())
                || !ESCAPES.iter().any(|e| e.starts_with(sequence.as_str()))
            {
                escape = None;
            }
            continue;
        }
        match c {
            '\u{1b}' => escape = Some(String::new()),
            '\r' | '\n' => {
                return Ok(Line {
                    text: answer,
                    at_eof: false,
                });
            }
            '\u{8}' | '\u{7f}' => {
                if answer.pop().is_some() {
                    out.print_raw("\u{8} \u{8}");
                }
            }
            '\u{3}' => return Err(Failure::message("Interrupted (Interrupt)")),
            '\u{4}' => {
                if answer.is_empty() {
                    return Ok(Line {
                        text: answer,
                        at_eof: false,
                    });
                }
            }
            c if c < ' ' => {}
            c => {
                answer.push(c);
                match echo {
                    Some(with) => out.print_raw(&with.to_string()),
                    None => out.print_raw(&c.to_string()),
                }
            }
        }
    }
}

/// One UTF-8 character from the input.
fn read_char(input: &mut dyn BufRead) -> Option<char> {
    let mut bytes = Vec::with_capacity(4);
    loop {
        let buffer = input.fill_buf().ok()?;
        let &byte = buffer.first()?;
        input.consume(1);
        bytes.push(byte);
        match std::str::from_utf8(&bytes) {
            Ok(s) => return s.chars().next(),
            Err(e) if e.error_len().is_some() || bytes.len() >= 4 => {
                return Some(char::REPLACEMENT_CHARACTER);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Captured;

    fn ask(question: Ask, input: &str) -> (Result<Answer, Failure>, String) {
        let captured = Captured::default();
        let out = Out::new(Box::new(captured.clone()));
        let mut input = std::io::Cursor::new(input.as_bytes().to_vec());
        let answer = question.run(&mut input, &out);
        (answer, captured.text())
    }

    #[test]
    fn yes_no_with_default() {
        let (answer, shown) = ask(Ask::new("Delete the application?").yes_no(true), "n\n");
        assert_eq!(answer.unwrap(), Answer::Bool(false));
        assert_eq!(shown, "Delete the application? [Yn]: n\n");
        let (answer, shown) = ask(Ask::new("Save?").yes_no(false), "");
        assert_eq!(answer.unwrap(), Answer::Bool(false));
        assert_eq!(shown, "Save? [yN]: \n");
    }

    #[test]
    fn no_default_asks_again_then_fails_at_eof() {
        let (answer, shown) = ask(Ask::new("Start Command"), "\nnode app.js\n");
        assert_eq!(answer.unwrap(), Answer::Text("node app.js".into()));
        assert_eq!(shown, "Start Command: \nStart Command: node app.js\n");
        let (answer, _) = ask(Ask::new("Start Command"), "");
        assert!(answer.is_err());
    }

    #[test]
    fn choices_by_text_number_and_prefix() {
        let memory = || {
            Ask::new("Memory reservation")
                .default(AskDefault::Text("64M".into()))
                .choices(vec!["128M".into(), "256M".into(), "512M".into()])
        };
        let (answer, shown) = ask(memory(), "256M\n");
        assert_eq!(answer.unwrap(), Answer::Text("256M".into()));
        assert_eq!(shown, "Memory reservation (128M, 256M, 512M) [64M]: 256M\n");
        assert_eq!(ask(memory(), "2\n").0.unwrap(), Answer::Text("256M".into()));
        // interact returns the typed prefix itself, not the choice it completes.
        assert_eq!(ask(memory(), "51\n").0.unwrap(), Answer::Text("51".into()));
        let (answer, shown) = ask(memory(), "9G\n\n");
        assert_eq!(answer.unwrap(), Answer::Text("64M".into()));
        assert!(shown.contains("Unknown answer, please try again!\n"));
        let (answer, shown) = ask(
            Ask::new("Select Infrastructure")
                .choices(vec!["AWS US East".into(), "AWS EU West".into()])
                .indexed(),
            "2\n",
        );
        assert_eq!(answer.unwrap(), Answer::Text("AWS EU West".into()));
        assert_eq!(
            shown,
            "1: AWS US East\n2: AWS EU West\nSelect Infrastructure: 2\n"
        );
    }

    #[test]
    fn passwords_echo_stars_and_numbers_convert() {
        let (answer, shown) = ask(Ask::new("Password").echo('*'), "secret\n");
        assert_eq!(answer.unwrap(), Answer::Text("secret".into()));
        assert_eq!(shown, "Password: ******\n");
        let (answer, _) = ask(
            Ask::new("How many instances?").default(AskDefault::Int(1)),
            "3x\n",
        );
        assert_eq!(answer.unwrap(), Answer::Int(3));
        assert_eq!(ruby_to_i("  -1_0x"), -10);
        assert_eq!(ruby_to_i("abc"), 0);
    }

    #[test]
    fn backspace_edits_the_answer() {
        let (answer, shown) = ask(Ask::new("Email"), "ab\u{7f}c\n");
        assert_eq!(answer.unwrap(), Answer::Text("ac".into()));
        assert_eq!(shown, "Email: ab\u{8} \u{8}c\n");
    }
}
