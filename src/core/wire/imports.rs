//! Import files (`POST /v1/imports`): the job's declaration, the `Splitter` that cuts a file into chunks at row
//! boundaries as it streams past, and a chunk's rows as events (NDJSON of Segment events, or CSV rows through a
//! column mapping), each bad row rejected with its line, code, path and message while the rows beside it go on.
//!
//! The edge owns the I/O: it feeds the upload to a `Splitter` a piece at a time, stores each chunk it makes ready
//! as an object of its own in R2, records them, and later reads each chunk back and hands its bytes to
//! `parse_chunk`. The splitter holds at most one chunk's worth of rows per partition (`PARTITIONS`); a consumer
//! holds one chunk.

use crate::core::base::sort::CollectInto;
use crate::core::base::time::{parse_iso8601, Millis};
use crate::core::model::consent::Purpose;
use crate::core::model::event::Event;
use crate::core::rules::Config;
use crate::core::wire::events::parse_import_line;
use crate::core::wire::import_rows::{csv_event, Refusal, RowKind};
pub use crate::core::wire::import_rows::{csv_fields, Columns, Kind, Target};
use crate::core::wire::{BodyError, MAX_FUTURE_MS};
use serde_json::{json, Value as J};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// About how many bytes of rows one chunk holds (one object, one queue message). A partition becomes a chunk at
/// the first row that takes it past this.
pub const CHUNK_BYTES: u64 = 256 * 1024;
/// The longest row (a line of NDJSON, a CSV record): a longer one is rejected (`row_too_long`) by line number,
/// and never read back.
pub const MAX_ROW_BYTES: u64 = 64 * 1024;
/// The most a file may hold once inflated: a gzip bomb stops here (413).
pub const MAX_IMPORT_BYTES: usize = 2 << 30;
/// The most columns a CSV file may map.
pub const MAX_COLUMNS: usize = 256;
/// Rejected rows kept per chunk (and while splitting) with their line; all are counted.
pub const MAX_REJECTS_KEPT: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        match s {
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    /// The format a `Content-Type` names (its parameters ignored); `None` for any other type (a 415).
    pub fn of_content_type(value: &str) -> Option<Format> {
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" => Some(Format::Csv),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => {
                Some(Format::Ndjson)
            }
            _ => None,
        }
    }
}

/// The legal basis an import declares for its people's data (GDPR art. 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    Consent,
    Contract,
    LegitimateInterest,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Basis::Consent => "consent",
            Basis::Contract => "contract",
            Basis::LegitimateInterest => "legitimate_interest",
        }
    }

    fn parse(s: &str) -> Option<Basis> {
        Some(match s {
            "consent" => Basis::Consent,
            "contract" => Basis::Contract,
            "legitimate_interest" => Basis::LegitimateInterest,
            _ => return None,
        })
    }
}

/// A job's declaration: what the file is and what it carries, checked against the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Declaration {
    pub format: Format,
    pub kind: Kind,
    /// Column name → target, CSV only.
    pub mapping: Vec<(String, Target)>,
    /// Purposes the file's people granted (`consent`), under `basis`; a row's own consent columns win.
    pub consent: Vec<Purpose>,
    pub basis: Option<Basis>,
    /// When profile rows without a timestamp column are true (default: when the job was made).
    pub as_of: Option<Millis>,
    /// A file already in R2, instead of an upload.
    pub object: Option<String>,
}

/// The parameters an upload's query may name: its declaration's, and `source` (the name an operator's job records
/// as its source; the edge reads it).
pub const UPLOAD_PARAMETERS: [&str; 6] = ["kind", "mapping", "consent", "basis", "asOf", "source"];

fn shape(path: &str, message: impl Into<String>) -> BodyError {
    BodyError::Shape { path: path.into(), message: message.into() }
}

impl Declaration {
    /// An upload's declaration: its `Content-Type` says the format, the query the rest (`kind`, `mapping` as
    /// JSON, `consent` as purposes separated by commas, `basis`, `asOf`).
    pub fn of_upload(
        content_type: Option<&str>,
        query: &[(String, String)],
        config: &Config,
        now: Millis,
    ) -> Result<Declaration, BodyError> {
        let format = content_type.and_then(Format::of_content_type).ok_or_else(|| {
            shape(
                "Content-Type",
                "send the file as text/csv or application/x-ndjson (gzip allowed as Content-Encoding)",
            )
        })?;
        // A misspelt parameter (`cosnent=analytics`) would import people without what the operator meant to
        // declare: every name is one the upload takes, or the upload is refused, naming it.
        if let Some((name, _)) = query.iter().find(|(n, _)| !UPLOAD_PARAMETERS.contains(&n.as_str())) {
            let known = UPLOAD_PARAMETERS.join(", ");
            return Err(shape(name, format!("unknown parameter {name:?}: an upload's query takes {known}")));
        }
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let mapping = match get("mapping") {
            None => None,
            Some(m) => {
                Some(serde_json::from_str::<J>(m).map_err(|e| shape("mapping", format!("mapping is not JSON: {e}")))?)
            }
        };
        let consent: Vec<J> = get("consent")
            .map(|c| c.split(',').filter(|p| !p.trim().is_empty()).map(|p| json!(p.trim())).collect())
            .unwrap_or_default();
        let fields = json!({"kind": get("kind"), "mapping": mapping, "consent": consent, "basis": get("basis"), "asOf": get("asOf")});
        Declaration::of_fields(format, &fields, None, config, now)
    }

    /// A declaration naming a file already in R2: a JSON object with `object` and `format` besides the rest.
    pub fn of_json(body: &[u8], config: &Config, now: Millis) -> Result<Declaration, BodyError> {
        let v: J =
            serde_json::from_slice(body).map_err(|e| BodyError::NotJson(format!("body is not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(shape("", "the body must be a JSON object naming the file (object) and its format"));
        }
        let object = match v.get("object") {
            Some(J::String(o)) if !o.is_empty() && o.len() <= 1024 && !o.contains("..") => o.clone(),
            _ => return Err(shape("object", "object must name the file's key in the imports bucket")),
        };
        let format = v
            .get("format")
            .and_then(J::as_str)
            .and_then(Format::parse)
            .ok_or_else(|| shape("format", "format must be csv or ndjson"))?;
        let consent = v.get("consent").cloned().unwrap_or(J::Null);
        let consent = match consent {
            J::Null => vec![],
            J::Array(items) => items,
            _ => return Err(shape("consent", "consent must be a list of purposes")),
        };
        let fields = json!({"kind": v.get("kind"), "mapping": v.get("mapping"), "consent": consent, "basis": v.get("basis"), "asOf": v.get("asOf")});
        Declaration::of_fields(format, &fields, Some(object), config, now)
    }

    fn of_fields(
        format: Format,
        f: &J,
        object: Option<String>,
        config: &Config,
        now: Millis,
    ) -> Result<Declaration, BodyError> {
        let text = |k: &str| match f.get(k) {
            None | Some(J::Null) => Ok(None),
            Some(J::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(shape(k, format!("{k} must be a string"))),
        };
        let kind = match text("kind")? {
            None if format == Format::Csv => Kind::Profiles,
            None => Kind::Events,
            Some("profiles") => Kind::Profiles,
            Some("events") => Kind::Events,
            Some(_) => return Err(shape("kind", "kind must be profiles or events")),
        };
        let mut mapping = Vec::new();
        match (format, f.get("mapping")) {
            (Format::Ndjson, None | Some(J::Null)) => {}
            (Format::Ndjson, Some(_)) => {
                return Err(shape("mapping", "an NDJSON file's events name their own fields: only CSV takes a mapping"))
            }
            (Format::Csv, Some(J::Object(m))) if !m.is_empty() && m.len() <= MAX_COLUMNS => {
                for (column, target) in m {
                    let path = format!("mapping.{column}");
                    let target = target.as_str().ok_or_else(|| shape(&path, "a column's target must be a string"))?;
                    mapping.push((column.clone(), Target::parse(target, kind, config).map_err(|m| shape(&path, m))?));
                }
            }
            (Format::Csv, _) => {
                return Err(shape(
                    "mapping",
                    format!(
                        "a CSV file needs a mapping: an object of at most {MAX_COLUMNS} columns, each to its target"
                    ),
                ))
            }
        }
        if format == Format::Csv {
            let has = |f: fn(&Target) -> bool| mapping.iter().any(|(_, t)| f(t));
            if !has(|t| matches!(t, Target::UserId | Target::AnonymousId | Target::Identity(_))) {
                return Err(shape(
                    "mapping",
                    "map at least one column to userId, anonymousId or identities.<type>: a row must say whose it is",
                ));
            }
            if kind == Kind::Events && !has(|t| *t == Target::Event) {
                return Err(shape("mapping", "event rows need a column mapped to event (the event's name)"));
            }
        }
        let mut consent = Vec::new();
        for (i, p) in f.get("consent").and_then(J::as_array).into_iter().flatten().enumerate() {
            let purpose = p.as_str().and_then(Purpose::parse).filter(|p| Purpose::OPTIONAL.contains(p));
            consent.push(purpose.ok_or_else(|| {
                shape(
                    &format!("consent[{i}]"),
                    "not a consent purpose (analytics, personalization, advertising, marketing)",
                )
            })?);
        }
        let basis = match text("basis")? {
            None if consent.is_empty() => None,
            None => Some(Basis::Consent),
            Some(b) => Some(
                Basis::parse(b)
                    .ok_or_else(|| shape("basis", "basis must be consent, contract or legitimate_interest"))?,
            ),
        };
        let as_of = match text("asOf")? {
            None => None,
            Some(t) => match parse_iso8601(t) {
                Some(at) if (0..=now + MAX_FUTURE_MS).contains(&at) => Some(at),
                _ => return Err(shape("asOf", "asOf must be an ISO 8601 time between 1970 and now")),
            },
        };
        Ok(Declaration { format, kind, mapping, consent, basis, as_of, object })
    }

    /// The declaration as a job stores it (and as `of_stored` reads it back).
    pub fn to_json(&self) -> J {
        json!({
            "format": self.format.name(),
            "kind": self.kind.name(),
            "mapping": self.mapping.iter().map(|(c, t)| (c.clone(), J::String(t.name()))).collect_object(),
            "consent": self.consent.iter().map(|p| p.name()).collect::<Vec<_>>(),
            "basis": self.basis.map(Basis::name),
            "asOf": self.as_of,
            "object": self.object,
        })
    }

    /// A stored declaration, checked again against the configuration in force.
    pub fn of_stored(text: &str, config: &Config, now: Millis) -> Result<Declaration, BodyError> {
        let mut v: J = serde_json::from_str(text).map_err(|e| BodyError::NotJson(e.to_string()))?;
        let format = v
            .get("format")
            .and_then(J::as_str)
            .and_then(Format::parse)
            .ok_or_else(|| shape("format", "unknown format"))?;
        if let Some(at) = v.get("asOf").and_then(J::as_i64) {
            v["asOf"] = J::String(crate::core::base::time::format_iso8601(at));
        }
        if format == Format::Ndjson {
            v["mapping"] = J::Null;
        }
        let object = v.get("object").and_then(J::as_str).map(String::from);
        Declaration::of_fields(format, &v, object, config, now)
    }

    /// The header bound to the mapping: each column's target, and the columns the mapping does not name.
    pub fn bind(&self, header: &[u8]) -> Result<Columns, BodyError> {
        let names = csv_fields(header).map_err(|why| shape("header", format!("the header row is not CSV: {why}")))?;
        if names.len() > MAX_COLUMNS {
            return Err(shape(
                "header",
                format!("the file has {} columns; at most {MAX_COLUMNS} are read", names.len()),
            ));
        }
        for (column, _) in &self.mapping {
            if !names.iter().any(|n| n == column) {
                return Err(shape(&format!("mapping.{column}"), format!("the file has no column {column:?}")));
            }
        }
        let mut targets = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for n in &names {
            match self.mapping.iter().find(|(c, _)| c == n) {
                Some((_, t)) => targets.push(t.clone()),
                None => {
                    unknown.push(n.clone());
                    targets.push(Target::Ignore);
                }
            }
        }
        let mut digest = Sha256::new();
        digest.update(header);
        digest.update(self.kind.name());
        Ok(Columns { names, targets, unknown, digest: digest.finalize().into() })
    }
}

/// One stored chunk (an object of its own, `{job}/{n}` in the imports bucket): framed rows of some people, the
/// line its first row is on, and how many rows it holds. `offset` is where its rows begin in the object (0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub length: u64,
    pub first_line: u64,
    pub rows: u64,
}

/// A row refused, by its line in the file (the first line is 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowReject {
    pub line: u64,
    pub code: &'static str,
    pub path: String,
    pub message: String,
}

impl RowReject {
    pub fn to_json(&self) -> J {
        json!({"line": self.line, "code": self.code, "path": self.path, "message": self.message})
    }
}

/// How many partitions a file's rows are spread over while it streams in, by a hash of the person each row is
/// about: a chunk then holds every row of its people that the file held since the partition's last chunk, so a
/// person's history is applied in one write, not one write per row (a file in time order spreads a person's rows
/// through it). Each partition holds at most about `CHUNK_BYTES` at once: 16 MiB in all.
pub const PARTITIONS: usize = 64;

/// Cuts a file into chunks as its bytes stream past (see the module). A CSV row ends at a line break outside
/// quotes; an NDJSON row at any line break. Each row is parsed once here to find the person it is about (a bad row
/// is rejected now, by its line) and framed into its person's partition; a partition that reaches `CHUNK_BYTES`
/// is a chunk, ready for the shell to store (`take_ready`). At the end the partitions left are packed into chunks.
#[derive(Debug)]
pub struct Splitter<'a> {
    decl: &'a Declaration,
    config: &'a Config,
    now: Millis,
    csv: bool,
    in_quotes: bool,
    /// Bytes seen, and the line the next byte is on.
    offset: u64,
    line: u64,
    /// Where the row being read began, on which line, and its bytes (at most `MAX_ROW_BYTES` + 1 of them).
    row_start: u64,
    row_line: u64,
    row: Vec<u8>,
    /// The CSV header (the first row) and the columns it binds to.
    header: Option<Vec<u8>>,
    header_done: bool,
    columns: Option<Columns>,
    parts: Vec<Part>,
    ready: Vec<Vec<u8>>,
    digest: Sha256,
    rows: u64,
    rejected: u64,
    pub chunks: Vec<Chunk>,
    pub rejects: Vec<RowReject>,
}

#[derive(Debug, Default)]
struct Part {
    bytes: Vec<u8>,
    rows: u64,
    first_line: u64,
}

/// What a whole file came to.
#[derive(Debug)]
pub struct Split {
    pub chunks: Vec<Chunk>,
    /// The first `MAX_REJECTS_KEPT` rows rejected while splitting; `rejected` counts them all.
    pub rejects: Vec<RowReject>,
    pub rejected: u64,
    pub header: Option<Vec<u8>>,
    pub columns: Option<Columns>,
    /// The chunks made at the end, still to be stored (the last of `chunks`).
    pub ready: Vec<Vec<u8>>,
    pub bytes: u64,
    pub rows: u64,
    /// SHA-256 of the file's content: the same file imported again is known by it.
    pub digest: [u8; 32],
}

impl<'a> Splitter<'a> {
    pub fn new(decl: &'a Declaration, config: &'a Config, now: Millis) -> Splitter<'a> {
        let csv = decl.format == Format::Csv;
        Splitter {
            decl,
            config,
            now,
            csv,
            in_quotes: false,
            offset: 0,
            line: 1,
            row_start: 0,
            row_line: 1,
            row: Vec::new(),
            header: None,
            header_done: !csv,
            columns: None,
            parts: (0..PARTITIONS).map(|_| Part::default()).collect(),
            ready: Vec::new(),
            digest: Sha256::new(),
            rows: 0,
            rejected: 0,
            chunks: Vec::new(),
            rejects: Vec::new(),
        }
    }

    /// Takes the next bytes of the file. Fails only when a CSV header does not bind to the declared mapping (the
    /// file cannot be read at all).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), BodyError> {
        self.digest.update(bytes);
        let base = self.offset;
        let mut from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'"' if self.csv => self.in_quotes = !self.in_quotes,
                b'\n' => {
                    self.line += 1;
                    if !self.in_quotes {
                        self.keep(&bytes[from..=i]);
                        from = i + 1;
                        self.end_row(base + i as u64 + 1)?;
                    }
                }
                _ => {}
            }
        }
        self.keep(&bytes[from..]);
        self.offset = base + bytes.len() as u64;
        Ok(())
    }

    /// Chunks complete since the last call, in the order of `chunks` (the shell stores each as its own object).
    pub fn take_ready(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.ready)
    }

    fn keep(&mut self, piece: &[u8]) {
        let room = (MAX_ROW_BYTES as usize + 1).saturating_sub(self.row.len());
        self.row.extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// A row ended just before `end`.
    fn end_row(&mut self, end: u64) -> Result<(), BodyError> {
        let (start, line) = (self.row_start, self.row_line);
        let row = std::mem::take(&mut self.row);
        self.row_start = end;
        self.row_line = self.line;
        if !self.header_done {
            self.header_done = true;
            if end - start > MAX_ROW_BYTES {
                return Err(shape("header", format!("the header row is longer than {MAX_ROW_BYTES} bytes")));
            }
            self.columns = Some(self.decl.bind(&row)?);
            self.header = Some(row);
            return Ok(());
        }
        if end - start > MAX_ROW_BYTES {
            let message = format!("the row is {} bytes long; a row may be at most {MAX_ROW_BYTES}", end - start);
            self.reject(RowReject { line, code: "row_too_long", path: String::new(), message });
            return Ok(());
        }
        if row.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match row_event(&row, self.decl, self.columns.as_ref(), self.config, self.now) {
            Ok(event) => {
                let p = (fnv1a(event.person().as_bytes()) % PARTITIONS as u64) as usize;
                self.rows += 1;
                let part = &mut self.parts[p];
                if part.rows == 0 {
                    part.first_line = line;
                }
                part.bytes.extend_from_slice(format!("{line} {}\n", row.len()).as_bytes());
                part.bytes.extend_from_slice(&row);
                part.rows += 1;
                if part.bytes.len() as u64 >= CHUNK_BYTES {
                    let part = std::mem::take(&mut self.parts[p]);
                    self.emit(part);
                }
            }
            Err((code, path, message)) => self.reject(RowReject { line, code, path, message }),
        }
        Ok(())
    }

    fn reject(&mut self, r: RowReject) {
        self.rows += 1;
        self.rejected += 1;
        if self.rejects.len() < MAX_REJECTS_KEPT {
            self.rejects.push(r);
        }
    }

    fn emit(&mut self, part: Part) {
        self.chunks.push(Chunk {
            offset: 0,
            length: part.bytes.len() as u64,
            first_line: part.first_line,
            rows: part.rows,
        });
        self.ready.push(part.bytes);
    }

    /// The file has ended: its last row (without a final line break), the partitions left packed into chunks of
    /// about `CHUNK_BYTES` (the last of them ready), and what it all came to.
    pub fn finish(mut self) -> Result<Split, BodyError> {
        if self.row_start < self.offset {
            let end = self.offset;
            self.end_row(end)?;
        }
        let mut pack = Part::default();
        for part in std::mem::take(&mut self.parts) {
            if part.rows == 0 {
                continue;
            }
            if pack.rows > 0 && (pack.bytes.len() + part.bytes.len()) as u64 > CHUNK_BYTES {
                self.emit(std::mem::take(&mut pack));
            }
            pack.first_line = if pack.rows == 0 { part.first_line } else { pack.first_line.min(part.first_line) };
            pack.rows += part.rows;
            pack.bytes.extend(part.bytes);
        }
        if pack.rows > 0 {
            self.emit(pack);
        }
        Ok(Split {
            chunks: self.chunks,
            rejects: self.rejects,
            rejected: self.rejected,
            header: self.header.filter(|_| self.header_done),
            columns: self.columns,
            ready: self.ready,
            bytes: self.offset,
            rows: self.rows,
            digest: self.digest.finalize().into(),
        })
    }
}

/// FNV-1a, 64 bits: a stable hash (the same person goes to the same partition in every build).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One row as an event, marked imported (not yet given the declaration's consent).
fn row_event(
    row: &[u8],
    decl: &Declaration,
    columns: Option<&Columns>,
    config: &Config,
    now: Millis,
) -> Result<Event, Refusal> {
    match (decl.format, columns) {
        (Format::Csv, Some(c)) => {
            let kind = RowKind { kind: decl.kind, consent: &decl.consent, as_of: decl.as_of };
            csv_event(row, c, kind, config, now)
        }
        _ => ndjson_event(row, now),
    }
}

/// A chunk's rows: the events (each with its line), the rows refused, and how many rows were read.
#[derive(Debug, Default)]
pub struct ChunkRows {
    pub events: Vec<Event>,
    pub lines: Vec<u64>,
    pub rejects: Vec<RowReject>,
    pub read: u64,
}

/// The rows of one stored chunk (framed by the `Splitter`: `{line} {length}\n` and the row's bytes) as events,
/// each marked imported with the declaration's consent where the row says none. `columns` is the bound header of
/// a CSV file. A frame that does not read (the chunk was damaged in storage) ends the chunk with one reject.
pub fn parse_chunk(
    bytes: &[u8],
    decl: &Declaration,
    columns: Option<&Columns>,
    config: &Config,
    now: Millis,
) -> ChunkRows {
    let mut out = ChunkRows::default();
    let declared: Option<BTreeMap<String, bool>> =
        (!decl.consent.is_empty()).then(|| decl.consent.iter().map(|p| (p.name().to_string(), true)).collect_map());
    let mut at = 0;
    while at < bytes.len() {
        let Some((line, row, next)) = frame(bytes, at) else {
            out.rejects.push(RowReject {
                line: out.lines.last().copied().unwrap_or(0),
                code: "chunk_damaged",
                path: String::new(),
                message: format!("the stored chunk does not read past byte {at}; its rows after that were not applied"),
            });
            break;
        };
        at = next;
        out.read += 1;
        match row_event(row, decl, columns, config, now) {
            Ok(mut event) => {
                event.imported = true;
                if event.consent.is_none() {
                    event.consent = declared.clone();
                }
                out.events.push(event);
                out.lines.push(line);
            }
            Err((code, path, message)) => out.rejects.push(RowReject { line, code, path, message }),
        }
    }
    out
}

/// The frame at `at`: its line, its row, and where the next frame begins.
fn frame(bytes: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let head_end = at + bytes.get(at..)?.iter().take(48).position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&bytes[at..head_end]).ok()?;
    let (line, length) = head.split_once(' ')?;
    let (line, length) = (line.parse::<u64>().ok()?, length.parse::<usize>().ok()?);
    let end = (head_end + 1).checked_add(length)?;
    Some((line, bytes.get(head_end + 1..end)?, end))
}

fn ndjson_event(row: &[u8], now: Millis) -> Result<Event, Refusal> {
    let text =
        std::str::from_utf8(row).map_err(|_| ("invalid_utf8", String::new(), "the line is not UTF-8".to_string()))?;
    parse_import_line(text.trim_end(), now).map_err(|r| (r.code, r.path, r.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::value::Value;
    use crate::core::model::event::EventKind;
    use crate::core::model::identity::Identity;
    use crate::core::rules::compile_str;

    const NOW: Millis = 1_795_344_600_000; // 2026-11-22T10:50:00Z

    fn config() -> Config {
        compile_str(r#"{"identity": {"identifiers": {"user_id": {"limit": 1, "priority": 1}, "email": {"limit": 5, "priority": 2}, "crm_id": {"limit": 1, "priority": 3}, "anonymous_id": {"limit": 100, "priority": 9}}}}"#).unwrap()
    }

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A file through the splitter in pieces of `piece` bytes: what it came to, and its chunks' bytes in order.
    fn split(decl: &Declaration, file: &[u8], piece: usize) -> (Split, Vec<Vec<u8>>) {
        let config = config();
        let mut s = Splitter::new(decl, &config, NOW);
        let mut stored = Vec::new();
        for p in file.chunks(piece.max(1)) {
            s.feed(p).unwrap();
            stored.extend(s.take_ready());
        }
        let mut split = s.finish().unwrap();
        stored.extend(std::mem::take(&mut split.ready));
        (split, stored)
    }

    /// Rows framed as the splitter stores them, one per line from `first_line` (blank lines skipped).
    fn framed(body: &str, first_line: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, row) in body.split_inclusive('\n').enumerate() {
            if !row.trim().is_empty() {
                out.extend(format!("{} {}\n{row}", first_line + i as u64, row.len()).as_bytes());
            }
        }
        out
    }

    fn ndjson_decl() -> Declaration {
        Declaration::of_upload(Some("application/x-ndjson"), &[], &config(), NOW).unwrap()
    }

    /// Declarations refused, one row each, with the path of what is wrong.
    #[test]
    fn a_declaration_names_what_is_wrong_by_its_path() {
        let config = config();
        type Row<'a> = (Option<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
        let rows: Vec<Row> = vec![
            (Some("application/pdf"), vec![], "Content-Type"),
            (Some("text/csv"), vec![], "mapping"),
            (Some("text/csv"), vec![("mapping", "[1]")], "mapping"),
            (Some("text/csv"), vec![("mapping", "{\"a\": \"traits.x\"}")], "mapping"),
            (Some("text/csv"), vec![("mapping", "{\"Mail\": \"identities.fax\"}")], "mapping.Mail"),
            (
                Some("text/csv"),
                vec![("mapping", "{\"Mail\": \"identities.email\", \"Plan\": \"properties.plan\"}")],
                "mapping.Plan",
            ),
            (Some("text/csv"), vec![("kind", "events"), ("mapping", "{\"Mail\": \"identities.email\"}")], "mapping"),
            (Some("text/csv"), vec![("kind", "things"), ("mapping", "{\"Mail\": \"identities.email\"}")], "kind"),
            (Some("application/x-ndjson"), vec![("mapping", "{}")], "mapping"),
            (Some("application/x-ndjson"), vec![("consent", "analytics,selling")], "consent[1]"),
            (Some("application/x-ndjson"), vec![("basis", "vibes")], "basis"),
            (Some("application/x-ndjson"), vec![("asOf", "2190-01-01")], "asOf"),
            (Some("application/x-ndjson"), vec![("consent", "analytics"), ("cosnent", "marketing")], "cosnent"),
            (Some("text/csv"), vec![("Kind", "profiles")], "Kind"),
        ];
        for (ct, q, path) in rows {
            let e = Declaration::of_upload(ct, &query(&q), &config, NOW).unwrap_err();
            assert!(matches!(&e, BodyError::Shape { path: p, .. } if p == path), "{q:?}: {e:?}");
        }
        let d = Declaration::of_upload(
            Some("text/csv; charset=utf-8"),
            &query(&[
                ("mapping", r#"{"Mail": "identities.email", "CRM": "identities.crm_id", "Plan": "traits.plan"}"#),
                ("consent", "analytics"),
                ("source", "crm"),
            ]),
            &config,
            NOW,
        )
        .unwrap();
        assert_eq!(
            (d.kind, d.basis, d.consent.clone()),
            (Kind::Profiles, Some(Basis::Consent), vec![Purpose::Analytics])
        );
        // What a job stores reads back as the same declaration.
        assert_eq!(Declaration::of_stored(&d.to_json().to_string(), &config, NOW).unwrap(), d);
        let named = Declaration::of_json(
            br#"{"object": "crm/a.csv", "format": "csv", "mapping": {"Mail": "identities.email"}}"#,
            &config,
            NOW,
        )
        .unwrap();
        assert_eq!(named.object.as_deref(), Some("crm/a.csv"));
        assert_eq!(Declaration::of_stored(&named.to_json().to_string(), &config, NOW).unwrap(), named);
        let e = Declaration::of_json(br#"{"object": "../x", "format": "csv"}"#, &config, NOW).unwrap_err();
        assert!(matches!(e, BodyError::Shape { path, .. } if path == "object"));
    }

    #[test]
    fn the_splitter_puts_each_person_s_rows_in_one_chunk_whatever_the_pieces() {
        // CSV with a quoted line break: the record spans two lines and stays whole. 300 people, their rows spread
        // through the file as an export in time order spreads them.
        let mut file = b"email,user,crm,plan,ltv,since,news,notes\n".to_vec();
        for i in 0..20_000 {
            let p = i % 300;
            file.extend(
                format!("u{p}@x.example,u{p},,gold,1,2026-03-01,,\"line one\nline two, \"\"quoted\"\"\"\n").as_bytes(),
            );
        }
        let decl = csv_decl();
        for piece in [1, 7, 4096, 1 << 20] {
            let (s, stored) = split(&decl, &file, piece);
            assert_eq!(s.header.as_deref(), Some(&b"email,user,crm,plan,ltv,since,news,notes\n"[..]));
            assert_eq!((s.rows, s.rejected), (20_000, 0));
            assert_eq!(stored.len(), s.chunks.len());
            assert!(s.chunks.len() > 1);
            let mut lines = Vec::new();
            let mut chunk_of: BTreeMap<String, usize> = BTreeMap::new();
            for (n, (c, bytes)) in s.chunks.iter().zip(&stored).enumerate() {
                assert_eq!(c.length, bytes.len() as u64);
                assert!(c.length <= CHUNK_BYTES + MAX_ROW_BYTES + 64, "a chunk is about CHUNK_BYTES");
                let rows = parse_chunk(bytes, &decl, s.columns.as_ref(), &config(), NOW);
                assert_eq!((rows.read, rows.rejects.len()), (c.rows, 0));
                assert_eq!(rows.lines.iter().min(), Some(&c.first_line));
                for (e, line) in rows.events.iter().zip(&rows.lines) {
                    let seen = *chunk_of.entry(e.user_id.clone().unwrap()).or_insert(n);
                    assert_eq!(seen, n, "a person's rows are in one chunk (line {line})");
                }
                lines.extend(rows.lines);
            }
            crate::core::base::sort::sort(&mut lines);
            assert_eq!(lines, (0..20_000).map(|i| 2 + 2 * i).collect::<Vec<u64>>(), "every row, on its own line");
        }
        // The digest is the content's, whatever the pieces.
        assert_eq!(split(&decl, &file, 3).0.digest, split(&decl, &file, 1 << 16).0.digest);
        // One person's rows past a chunk's size: the partition becomes a chunk as it fills, rows in file order.
        let mut file = Vec::new();
        for i in 0..12_000 {
            let row = format!(r#"{{"type":"track","event":"E","userId":"u","timestamp":"2026-01-01","n":{i}}}"#);
            file.extend(row.as_bytes());
            file.push(b'\n');
        }
        let (s, stored) = split(&ndjson_decl(), &file, 5000);
        assert!(s.chunks.len() >= 3, "{:?}", s.chunks);
        let mut last = 0;
        for (c, bytes) in s.chunks.iter().zip(&stored) {
            assert!(c.length >= CHUNK_BYTES || c == s.chunks.last().unwrap());
            let rows = parse_chunk(bytes, &ndjson_decl(), None, &config(), NOW);
            assert!(rows.lines.windows(2).all(|w| w[0] < w[1]) && rows.lines[0] > last);
            last = *rows.lines.last().unwrap();
        }
        assert_eq!(last, 12_000);
    }

    #[test]
    fn a_csv_header_that_does_not_bind_stops_the_file_at_its_header() {
        let config = config();
        let decl = csv_decl();
        let mut s = Splitter::new(&decl, &config, NOW);
        let e = s.feed(b"a,b\n1,2\n").unwrap_err();
        assert!(matches!(&e, BodyError::Shape { .. }), "{e:?}");
    }

    #[test]
    fn a_damaged_chunk_ends_with_a_reject_after_the_rows_that_read() {
        let good = framed("{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"timestamp\":\"2026-01-01\"}\n", 4);
        for tail in [&b"5 900\n{}"[..], b"five 2\n{}", b"5"] {
            let bytes = [good.as_slice(), tail].concat();
            let rows = parse_chunk(&bytes, &ndjson_decl(), None, &config(), NOW);
            assert_eq!((rows.read, rows.lines.clone()), (1, vec![4]));
            assert_eq!(rows.rejects.iter().map(|r| (r.line, r.code)).collect::<Vec<_>>(), [(4, "chunk_damaged")]);
        }
    }

    fn csv_decl() -> Declaration {
        Declaration::of_upload(
            Some("text/csv"),
            &query(&[("mapping", r#"{"email": "identities.email", "user": "userId", "crm": "identities.crm_id", "plan": "traits.plan", "ltv": "traits.ltv", "since": "timestamp", "news": "consent.marketing"}"#), ("consent", "analytics")]),
            &config(),
            NOW,
        )
        .unwrap()
    }

    #[test]
    fn a_long_row_is_rejected_by_its_line_and_the_rows_beside_it_kept() {
        let mut file = b"{\"type\":\"track\",\"event\":\"A\",\"userId\":\"u\",\"timestamp\":\"2026-01-01\"}\n".to_vec();
        file.extend(vec![b'x'; MAX_ROW_BYTES as usize + 10]);
        file.push(b'\n');
        file.extend(b"{\"type\":\"track\",\"event\":\"B\",\"userId\":\"u\",\"timestamp\":\"2026-01-02\"}");
        let (s, stored) = split(&ndjson_decl(), &file, 1000);
        assert_eq!(
            s.rejects,
            vec![RowReject {
                line: 2,
                code: "row_too_long",
                path: String::new(),
                message: s.rejects[0].message.clone()
            }]
        );
        assert_eq!((s.rows, s.rejected), (3, 1));
        let names: Vec<(u64, String)> = stored
            .iter()
            .flat_map(|bytes| {
                let rows = parse_chunk(bytes, &ndjson_decl(), None, &config(), NOW);
                rows.lines
                    .into_iter()
                    .zip(rows.events.into_iter().map(|e| e.count_key().to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(names, vec![(1, "A".to_string()), (3, "B".to_string())]);
    }

    /// Rows refused at their line with the column as path; the good rows beside them are events.
    #[test]
    fn csv_rows_become_events_and_bad_cells_are_rejected_at_their_column() {
        let config = config();
        let decl = csv_decl();
        let header = b"email,user,crm,plan,ltv,since,news,notes\n";
        let columns = decl.bind(header).unwrap();
        assert_eq!(columns.unknown, vec!["notes".to_string()]);
        let body = concat!(
            "Ana@X.example,u1,C-1,gold,120.50,2026-03-01,yes,\"=HYPERLINK(\"\"http://evil\"\")\"\n",
            "bo@x.example,,C-2,\"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",007,2190-01-01,no,\n",
            "cy@x.example,,,silver,3,yesterday,,\n",
            ",,,gold,1,2026-03-01,,\n",
            "di@x.example,,C-4,bronze,1,,maybe,\n",
            "ed@x.example,,C-5,\"=SUM(A1:A9)\",0.5,2026-03-02,,\n",
        );
        let rows = parse_chunk(&framed(body, 2), &decl, Some(&columns), &config, NOW);
        let rejected: Vec<(u64, &str, &str)> = rows.rejects.iter().map(|r| (r.line, r.code, r.path.as_str())).collect();
        assert_eq!(
            rejected,
            [
                (3, "timestamp_out_of_range", "since"),
                (4, "invalid_timestamp", "since"),
                (5, "missing_identity", ""),
                (6, "invalid_consent", "news")
            ]
        );
        assert_eq!((rows.read, rows.lines.clone()), (6, vec![2, 7]));
        let ana = &rows.events[0];
        assert_eq!(ana.user_id.as_deref(), Some("u1"));
        assert!(ana.imported);
        assert_eq!(ana.external_ids, vec![Identity::new("crm_id", "C-1")]);
        let EventKind::Identify { traits } = &ana.kind else { panic!() };
        assert_eq!(traits.get("email"), Some(&Value::String("Ana@X.example".into())));
        assert_eq!(traits.get("ltv"), Some(&Value::Number(120.5)));
        assert_eq!(traits.get("plan"), Some(&Value::String("gold".into())));
        assert!(traits.get("notes").is_none(), "an unknown column is not read");
        assert_eq!(
            ana.consent,
            Some(BTreeMap::from([("analytics".to_string(), true), ("marketing".to_string(), true)]))
        );
        let ed = &rows.events[1];
        let EventKind::Identify { traits } = &ed.kind else { panic!() };
        assert_eq!(traits.get("plan"), Some(&Value::String("=SUM(A1:A9)".into())), "a formula is text");
        assert_eq!(ed.routing, Some(Identity::new("email", "ed@x.example")), "no user id: the e-mail routes it");
        assert_eq!(ed.consent, Some(BTreeMap::from([("analytics".to_string(), true)])), "no consent cell: the job's");
        // The same row read again has the same id; the same row under another header does not.
        let again = parse_chunk(&framed(body, 2), &decl, Some(&columns), &config, NOW);
        assert_eq!(again.events[0].message_id, ana.message_id);
        let other = decl.bind(b"email,user,crm,plan,ltv,since,news,remarks\n").unwrap();
        assert_ne!(
            parse_chunk(&framed(body, 2), &decl, Some(&other), &config, NOW).events[0].message_id,
            ana.message_id
        );
    }

    #[test]
    fn ndjson_lines_keep_their_history_and_refuse_the_future() {
        let decl =
            Declaration::of_upload(Some("application/x-ndjson"), &query(&[("consent", "analytics")]), &config(), NOW)
                .unwrap();
        let body = concat!(
            r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2025-01-05T10:00:00Z","properties":{"revenue":30}}"#,
            "\n",
            "\n",
            r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2190-01-01T00:00:00Z"}"#,
            "\n",
            r#"{"type":"track","event":"Order Completed","userId":"u1"}"#,
            "\n",
            "{not json\n",
            r#"{"type":"identify","userId":"u2","timestamp":"2025-02-01","traits":{"plan":"gold"},"context":{"consent":{"categoryPreferences":{"analytics":false}}}}"#,
            "\n",
        );
        let rows = parse_chunk(&framed(body, 10), &decl, None, &config(), NOW);
        let rejected: Vec<(u64, &str, &str)> = rows.rejects.iter().map(|r| (r.line, r.code, r.path.as_str())).collect();
        assert_eq!(
            rejected,
            [
                (12, "timestamp_out_of_range", "timestamp"),
                (13, "missing_timestamp", "timestamp"),
                (14, "invalid_json", "")
            ]
        );
        assert_eq!((rows.read, rows.lines.clone()), (5, vec![10, 15]));
        assert_eq!(rows.events[0].timestamp, parse_iso8601("2025-01-05T10:00:00Z").unwrap(), "kept, never moved");
        assert!(rows.events[0].message_id.starts_with("imp-"));
        assert_eq!(rows.events[0].consent, Some(BTreeMap::from([("analytics".to_string(), true)])));
        assert_eq!(
            rows.events[1].consent,
            Some(BTreeMap::from([("analytics".to_string(), false)])),
            "the row's own wins"
        );
    }
}
