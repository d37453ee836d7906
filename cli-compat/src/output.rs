//! How af writes: Ruby's `puts` (a newline unless the text already ends with one) and `print`,
//! colours only on a terminal, and af's own distinction between its output channel (`say`,
//! `display`: silent with `-q` and before the options are parsed) and the plain `puts`/`print`
//! that prompts, `Login Required` and tracing use, which always write.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::json::Json;

/// A cloneable handle on stdout.
#[derive(Clone)]
pub(crate) struct Out {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Colour codes around `OK`, errors and warnings (af: only when stdout is a terminal).
    pub(crate) colorize: bool,
    /// af's `Config.output`: unset until the options are parsed, and with `-q`.
    pub(crate) enabled: bool,
}

impl Out {
    pub(crate) fn new(sink: Box<dyn Write + Send>) -> Out {
        Out {
            sink: Arc::new(Mutex::new(sink)),
            colorize: false,
            enabled: false,
        }
    }

    /// Gives the writer back (when the run ends).
    pub(crate) fn into_inner(self) -> Option<Box<dyn Write + Send>> {
        Arc::into_inner(self.sink).and_then(|m| m.into_inner().ok())
    }

    /// Kernel `print`: always written, flushed.
    pub(crate) fn print_raw(&self, text: &str) {
        if let Ok(mut sink) = self.sink.lock() {
            // A closed stdout (a broken pipe) is not worth failing a command for.
            let _ = sink.write_all(text.as_bytes());
            let _ = sink.flush();
        }
    }

    /// Bytes as they are (a child's output, which may not be UTF-8 or may split a character
    /// between two reads): always written, flushed.
    pub(crate) fn write_bytes(&self, bytes: &[u8]) {
        if let Ok(mut sink) = self.sink.lock() {
            let _ = sink.write_all(bytes);
            let _ = sink.flush();
        }
    }

    /// Kernel `puts`: always written.
    pub(crate) fn puts_raw(&self, text: &str) {
        if text.ends_with('\n') {
            self.print_raw(text);
        } else {
            self.print_raw(&format!("{text}\n"));
        }
    }

    /// af's `say` / `display(msg)`: `puts` on af's output channel.
    pub(crate) fn say(&self, text: &str) {
        if self.enabled {
            self.puts_raw(text);
        }
    }

    /// af's `display(msg, false)`: `print` on af's output channel.
    pub(crate) fn print(&self, text: &str) {
        if self.enabled {
            self.print_raw(text);
        }
    }

    /// af's `clear(80)`: back to the start of the line over 80 blanks.
    pub(crate) fn clear(&self, size: usize) {
        if self.enabled {
            self.print_raw(&format!("\r{}\r", " ".repeat(size)));
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colorize {
            format!("{code}{text}\u{1b}[0m")
        } else {
            text.to_owned()
        }
    }

    pub(crate) fn red(&self, text: &str) -> String {
        self.paint("\u{1b}[0m\u{1b}[31m", text)
    }

    pub(crate) fn green(&self, text: &str) -> String {
        self.paint("\u{1b}[0m\u{1b}[32m", text)
    }

    pub(crate) fn yellow(&self, text: &str) -> String {
        self.paint("\u{1b}[0m\u{1b}[33m", text)
    }

    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint("\u{1b}[0m\u{1b}[1m", text)
    }

    /// `display 'OK'.green`.
    pub(crate) fn ok(&self) {
        self.say(&self.green("OK"));
    }
}

/// af's `pretty_size`: `512B`, `1.5K`, `20.0M`, `2.0G` (`prec` digits after the point). The
/// size is a Ruby number: below 1K an Integer prints bare (`0B`), a Float with its fraction
/// (`0.0B`); anything else is `NA`.
pub(crate) fn pretty_size(size: &Json, prec: usize) -> String {
    let Some(value) = size.as_f64() else {
        return "NA".into();
    };
    if value < 1024.0 {
        return format!("{}B", size.to_ruby_s());
    }
    if value < 1024.0 * 1024.0 {
        return format!("{:.prec$}K", value / 1024.0);
    }
    if value < 1024.0 * 1024.0 * 1024.0 {
        return format!("{:.prec$}M", value / (1024.0 * 1024.0));
    }
    format!("{:.prec$}G", value / (1024.0 * 1024.0 * 1024.0))
}

/// af's `uptime_string`: `0d:0h:0m:11s`.
pub(crate) fn uptime_string(seconds: i64) -> String {
    let days = seconds / 86_400;
    let hours = seconds % 86_400 / 3_600;
    let minutes = seconds % 3_600 / 60;
    let secs = seconds % 60;
    format!("{days}d:{hours}h:{minutes}m:{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_sizes() {
        assert_eq!(pretty_size(&Json::Int(2048 * 1024 * 1024), 1), "2.0G");
        assert_eq!(pretty_size(&Json::Int(64 * 1024 * 1024), 0), "64M");
        assert_eq!(pretty_size(&Json::Float(20480.0 * 1024.0), 1), "20.0M");
        assert_eq!(pretty_size(&Json::Int(5_242_880), 1), "5.0M");
        assert_eq!(pretty_size(&Json::Int(0), 1), "0B");
        assert_eq!(pretty_size(&Json::Float(0.0), 1), "0.0B");
        assert_eq!(pretty_size(&Json::Null, 1), "NA");
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime_string(11), "0d:0h:0m:11s");
        assert_eq!(uptime_string(90_061), "1d:1h:1m:1s");
    }
}
