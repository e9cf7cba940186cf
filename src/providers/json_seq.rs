//! Splits a streamed JSON array of objects (`[{…},\r\n{…}]`) into its elements as they arrive.
//!
//! Gemini's `streamGenerateContent` without `alt=sse` sends one JSON array, delivered
//! incrementally; each element is a full `GenerateContentResponse`. A body that is a single
//! object is treated as a one-element sequence, so the same reader serves `generateContent`.
//! Each element is captured in a [`BoundedJson`], so memory stays bounded even for an element
//! carrying a large inline image.

use super::json_reader::skip_spaces;
use super::json_tail::BoundedJson;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first significant byte.
    Start,
    /// Inside the top-level array, between elements.
    Between,
    /// Inside an element (`array`: whether it is an array element or the whole document).
    Element {
        array: bool,
        depth: usize,
        in_string: bool,
        escaped: bool,
    },
    /// The top-level value is closed; later bytes are ignored.
    Done,
}

/// Incremental splitter of a JSON array of objects (or a single object).
#[derive(Debug)]
pub struct JsonSeq {
    state: State,
    element: BoundedJson,
    array: bool,
}

impl JsonSeq {
    /// Elements larger than `max_element_bytes` keep only their head and tail windows.
    pub fn new(max_element_bytes: usize) -> JsonSeq {
        JsonSeq {
            state: State::Start,
            element: BoundedJson::new(max_element_bytes),
            array: false,
        }
    }

    /// True once the top-level array (or object) was closed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True when the document is an array (a stream of elements), false for one object.
    pub fn is_array(&self) -> bool {
        self.array
    }

    /// Bytes of memory held, for tests and accounting.
    pub fn retained_bytes(&self) -> usize {
        self.element.retained_bytes()
    }

    /// Feeds bytes; `on_element` sees each element as soon as its closing brace arrives.
    pub fn feed(&mut self, chunk: &[u8], on_element: &mut impl FnMut(&BoundedJson)) {
        let mut i = 0;
        while i < chunk.len() {
            match self.state {
                State::Done => return,
                State::Start | State::Between => {
                    let Some(&b) = chunk.get(i) else { return };
                    match (self.state, b) {
                        (State::Start, b'[') => {
                            self.state = State::Between;
                            self.array = true;
                        }
                        (_, b'{') => {
                            self.state = State::Element {
                                array: self.state == State::Between,
                                depth: 0,
                                in_string: false,
                                escaped: false,
                            };
                            continue;
                        }
                        (State::Between, b']') => self.state = State::Done,
                        // Whitespace, commas, a BOM, or junk we cannot use: skip.
                        _ => {}
                    }
                    i += 1;
                }
                State::Element { .. } => {
                    let start = i;
                    let end = self.scan_element(chunk, i);
                    self.element.push(chunk.get(start..end).unwrap_or_default());
                    i = end;
                    if matches!(self.state, State::Between | State::Done) {
                        on_element(&self.element);
                        self.element.clear();
                    }
                }
            }
        }
    }

    /// Ends the input: an element still open is handed to `on_element` as it is (its
    /// parse salvages intact members). The state is kept for [`is_array`](Self::is_array).
    pub fn finish(&mut self, on_element: &mut impl FnMut(&BoundedJson)) {
        if let State::Element { .. } = self.state {
            on_element(&self.element);
            self.element.clear();
            self.state = State::Done;
        }
    }

    /// Scans element bytes from `chunk[i]`; returns where the element (or the chunk) ends,
    /// and moves to `Between`/`Done` when the element closed.
    fn scan_element(&mut self, chunk: &[u8], mut i: usize) -> usize {
        let State::Element {
            array,
            mut depth,
            mut in_string,
            mut escaped,
        } = self.state
        else {
            return i;
        };
        while let Some(&b) = chunk.get(i) {
            if in_string && !escaped {
                // Most of a document's bytes are inside strings: jump to the next quote
                // or backslash.
                let rest = chunk.get(i..).unwrap_or_default();
                let Some(k) = memchr::memchr2(b'"', b'\\', rest) else {
                    i = chunk.len();
                    break;
                };
                i += k;
                escaped = rest.get(k) == Some(&b'\\');
                in_string = escaped;
                i += 1;
                continue;
            }
            i += 1;
            if in_string {
                // The byte after a backslash.
                escaped = false;
                continue;
            }
            match b {
                // Pretty-printed bodies (Gemini's) indent each line.
                b'\n' => i = skip_spaces(chunk, i),
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.state = if array { State::Between } else { State::Done };
                        return i;
                    }
                }
                _ => {}
            }
        }
        self.state = State::Element {
            array,
            depth,
            in_string,
            escaped,
        };
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(doc: &[u8], chunk: usize) -> (Vec<serde_json::Value>, bool) {
        let mut seq = JsonSeq::new(1 << 20);
        let mut out = Vec::new();
        for c in doc.chunks(chunk.max(1)) {
            seq.feed(c, &mut |e| {
                if let Some(v) = e.parse::<serde_json::Value>() {
                    out.push(v.value);
                }
            });
        }
        (out, seq.is_done())
    }

    #[test]
    fn splits_arrays_and_single_objects() {
        let doc = b"[{\"a\":\"}]\\\"\"},\r\n{\"b\":[{}]}\n]";
        for chunk in 1..doc.len() {
            let (els, done) = split(doc, chunk);
            assert!(done);
            assert_eq!(els.len(), 2);
            assert_eq!(els[0]["a"], "}]\"");
        }
        let (els, done) = split(b" {\"x\":1} ", 2);
        assert!(done);
        assert_eq!(els.len(), 1);
        let (els, done) = split(b"[{\"x\":1},{\"y\"", 3);
        assert!(!done);
        assert_eq!(els.len(), 1);
    }

    proptest! {
        /// Arrays as serde writes them, compact or pretty-printed, split into their
        /// elements however the bytes are chunked.
        #[test]
        fn splits_what_serde_writes(
            elements in prop::collection::vec(
                prop::collection::btree_map("[a-z\"\\\\{}\\[\\] ]{0,6}", "[a-z\"\\\\{}\\[\\]\n ]{0,12}", 0..4),
                0..4,
            ),
            pretty: bool,
            chunk in 1usize..40,
        ) {
            let values: Vec<serde_json::Value> =
                elements.iter().map(|m| serde_json::json!(m)).collect();
            let doc = if pretty {
                serde_json::to_vec_pretty(&values)
            } else {
                serde_json::to_vec(&values)
            }
            .unwrap_or_default();
            let (got, done) = split(&doc, chunk);
            prop_assert!(done);
            prop_assert_eq!(got, values);
        }

        #[test]
        fn any_bytes_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..20) {
            let _ = split(&doc, chunk);
        }
    }
}
