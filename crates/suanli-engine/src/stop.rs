//! Stop strings over streamed text: text is released as soon as it can no
//! longer be the start of a stop string; at a match, everything from the
//! match on is dropped (as the OpenAI API and llama.cpp do).

#[derive(Debug, Default)]
pub struct StopScanner {
    stops: Vec<String>,
    /// Text received but not yet released (a possible stop-string start).
    held: String,
    stopped: bool,
}

impl StopScanner {
    pub fn new(stops: Vec<String>) -> Self {
        StopScanner {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string was seen.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Add `piece`; returns the text now safe to release and whether a stop
    /// string matched (then nothing more is released, ever).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.stopped {
            return (String::new(), true);
        }
        self.held.push_str(piece);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.stopped = true;
            return (out, true);
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        (out, false)
    }

    /// The held-back text, released at the end of generation.
    pub fn flush(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut s = StopScanner::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (t, stop) = s.push(p);
            out.push_str(&t);
            if stop {
                return (out, true);
            }
        }
        out.push_str(&s.flush());
        (out, false)
    }

    #[test]
    fn stops_across_pieces_and_drops_the_match() {
        assert_eq!(run(&["\n\n"], &["a", "b\n", "\nc"]), ("ab".into(), true));
        assert_eq!(run(&["END"], &["xE", "N", "D!"]), ("x".into(), true));
        assert_eq!(run(&["。"], &["你好", "。再见"]), ("你好".into(), true));
    }

    #[test]
    fn partial_matches_are_released_when_they_fail_or_at_the_end() {
        let mut s = StopScanner::new(vec!["ENDS".into()]);
        assert_eq!(s.push("aEN"), ("a".into(), false));
        assert_eq!(s.push("x"), ("ENx".into(), false));
        assert_eq!(run(&["ENDS"], &["abc", "EN"]), ("abcEN".into(), false));
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
        // The earliest of several matches wins.
        assert_eq!(run(&["b", "a"], &["xab"]), ("x".into(), true));
    }
}
