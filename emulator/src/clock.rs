//! Wall-clock time as v1 wrote it: seconds since the epoch, and `YYYY-MM-DD HH:MM:SS +0000`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub(crate) fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS +0000`, the format of `VCAP_APPLICATION.start` and of the stats' `time`.
pub(crate) fn time_of_day_utc(epoch_seconds: u64) -> String {
    let days = (epoch_seconds / 86_400) as i64;
    let secs = epoch_seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `n` random bytes as lower-case hex: v1's ids, tokens and passwords.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(&mut buffer[..]);
    hex::encode(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_format() {
        assert_eq!(time_of_day_utc(0), "1970-01-01 00:00:00 +0000");
        assert_eq!(time_of_day_utc(1_299_207_348), "2011-03-04 02:55:48 +0000");
        assert_eq!(time_of_day_utc(1_709_251_199), "2024-02-29 23:59:59 +0000");
    }

    #[test]
    fn ids_are_hex_of_the_length_asked() {
        let id = random_hex(16);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(random_hex(16), id);
    }
}
