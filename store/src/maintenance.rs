//! Maintenance of an embedded store file: [`check`], [`salvage`] and [`snapshot`] (backup).
//!
//! redb verifies its page checksums only in `Database::check_integrity` (which repairs, i.e.
//! writes, and may roll the file back a commit) and never on an ordinary read: a flipped byte in
//! a leaf is returned as data, or makes redb panic. So [`check`] and [`salvage`] do not go
//! through redb to read a file they distrust. They read it as the file format of redb 4.x
//! describes it (`docs/design.md` of the redb crate; `btree_base.rs` for the page layouts):
//! the super-header and its commit slots, then every B-tree from the primary slot's roots, each
//! page checked against the XXH3-128 checksum its parent (or the commit slot) recorded. They
//! never write to the file. Nothing in a page is trusted before its checksum matched, and every
//! offset read from a page is bounds-checked, so a damaged file yields a report, not a panic.
//!
//! A leaf whose checksum fails loses the records it held; a branch whose checksum fails loses
//! its whole subtree. Every other record is readable: [`salvage`] copies them, table by table,
//! into a fresh store written through redb, and reports per table how many records the file
//! declared, how many were copied, and which key gaps were lost.
//!
//! [`snapshot`] is the backup of a healthy store: every table copied inside one redb read
//! transaction (one consistent commit, while the writer keeps committing) into a fresh file.
//!
//! New files are created 0600 under a temporary name in the target folder, synced, then linked
//! to their final name (a link never replaces an existing file) and the folder synced: a crash
//! leaves either no target or a complete one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::{Database, Key, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle, Value};

use crate::embedded::{
    ACTIVE_SESSIONS, AUDIT, BLOBS, BLOB_REFS, DEVICES, KV, META, QUEUE, QUEUE_REFS, QUEUE_V1, SESSIONS,
    SESSION_IDS, TENANTS, USERS, USER_SESSIONS,
};

/// Deepest B-tree walked (redb's own `MAX_BTREE_DEPTH`); deeper means a corrupt page pointer.
pub const MAX_TREE_DEPTH: usize = 128;
/// Largest page read, in bytes (a page of order 16 at 4 KiB pages): a value bigger than this
/// cannot be checked or salvaged, and a page number claiming more is treated as damage.
pub const MAX_PAGE_BYTES: u64 = 256 * 1024 * 1024;
/// Damaged pages listed per table at most (the count of lost records stays exact).
pub const MAX_DAMAGE_LISTED: usize = 256;
/// Characters of a key shown in a report at most.
pub const MAX_KEY_SHOWN: usize = 80;
/// Mode of every file written here: the store holds password hashes and sealed secrets.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a folder [`salvage`] creates.
pub const DIR_MODE: u32 = 0o700;
/// File name of the salvaged store inside the target folder (as in a data folder).
pub const STORE_FILE: &str = "hush.redb";

/// redb's magic number, the first 9 bytes of every file.
const MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// Size of the header and the two commit slots (rounded up to one page in the file).
const SUPER_HEADER_BYTES: usize = 64 + 2 * SLOT_BYTES;
const SLOT_BYTES: usize = 128;
/// The only file format version redb 4 writes.
const FORMAT_VERSION: u8 = 3;
const LEAF: u8 = 1;
const BRANCH: u8 = 2;
/// `TableType::Normal` in redb's table tree (3 and 4 since format v2; 1 and 2 were v1).
const NORMAL_TABLE: u8 = 3;

/// Errors of the maintenance tools: each one a single line an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The store file does not exist.
    #[error("no store file at {0}")]
    Missing(PathBuf),
    /// The file exists but does not start like a redb file (or is too short to be one).
    #[error("{0} is not a redb store file")]
    NotRedb(PathBuf),
    /// A file format this build cannot read.
    #[error("{path}: unsupported redb file format ({detail})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The target exists already; nothing was written.
    #[error("{0} already exists; refusing to overwrite it")]
    TargetExists(PathBuf),
    /// A running node holds the store file (the embedded store belongs to one process).
    #[error("{0} is in use by a running node (stop it, or use `hushd store backup`, which asks the node)")]
    InUse(PathBuf),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// redb refused an operation on the store being written or read.
    #[error("store error: {0}")]
    Backend(String),
}

type Result<T, E = MaintenanceError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MaintenanceError + '_ {
    move |source| MaintenanceError::Io { path: path.to_owned(), source }
}

fn backend(e: impl fmt::Display) -> MaintenanceError {
    MaintenanceError::Backend(e.to_string())
}

/// A new redb database in `file` (empty, just created).
fn new_database(file: File) -> Result<Database> {
    let backend_file = redb::backends::FileBackend::new(file).map_err(backend)?;
    Database::builder().create_with_backend(backend_file).map_err(backend)
}

/// A page that could not be trusted, and the records it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The tree it belongs to: a table name, or `(table list)` / `(system)`.
    pub table: String,
    /// Byte offset of the page in the file.
    pub offset: u64,
    /// Page length in bytes.
    pub len: u64,
    /// What the page says it is (`leaf`, `branch`, or `unknown`): a claim, since it failed.
    pub kind: &'static str,
    /// Why it was refused (checksum mismatch, outside the file, ...).
    pub reason: String,
    /// The last readable key before the gap (`None`: the gap starts at the table's beginning).
    pub after: Option<String>,
    /// The first readable key after the gap (`None`: the gap runs to the table's end).
    pub before: Option<String>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "table {}: DAMAGED {} page at offset {} ({} bytes): {}; records after {} and before {} unreadable",
            self.table,
            self.kind,
            self.offset,
            self.len,
            self.reason,
            self.after.as_deref().unwrap_or("the first key"),
            self.before.as_deref().unwrap_or("the end of the table"),
        )
    }
}

/// One table as the file declares it and as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// Table name.
    pub name: String,
    /// Records the table's definition says it holds.
    pub declared: u64,
    /// Records read from pages whose checksum matched (for [`salvage`]: copied).
    pub readable: u64,
    /// Pages refused, at most [`MAX_DAMAGE_LISTED`].
    pub damage: Vec<Damage>,
    /// Why the table was not copied at all (salvage: unknown table or other types), if so.
    pub skipped: Option<String>,
}

impl TableReport {
    /// Records declared but not read.
    pub fn lost(&self) -> u64 {
        self.declared.saturating_sub(self.readable)
    }

    /// Every declared record read and no page refused.
    pub fn intact(&self) -> bool {
        self.damage.is_empty() && self.readable == self.declared && self.skipped.is_none()
    }
}

/// What [`check`] or [`salvage`] found (and, for salvage, copied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every table of the primary commit, by name.
    pub tables: Vec<TableReport>,
    /// Damage outside the tables: the table list or redb's system trees.
    pub other: Vec<Damage>,
    /// Problems of the file as a whole (commit slot checksum, recovery pending, ...).
    pub notes: Vec<String>,
    /// Whether a problem in `notes` is damage (as opposed to information).
    pub header_damaged: bool,
}

impl Report {
    /// No page refused, no record missing, commit slot intact.
    pub fn healthy(&self) -> bool {
        !self.header_damaged && self.other.is_empty() && self.tables.iter().all(TableReport::intact)
    }

    /// Records lost over every table.
    pub fn lost(&self) -> u64 {
        self.tables.iter().map(TableReport::lost).sum()
    }

    /// The table named `name`.
    pub fn table(&self, name: &str) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.notes {
            writeln!(f, "file: {n}")?;
        }
        for d in &self.other {
            writeln!(f, "{d}")?;
        }
        for t in &self.tables {
            match &t.skipped {
                Some(why) => writeln!(f, "table {}: {} records, SKIPPED: {why}", t.name, t.declared)?,
                None => writeln!(
                    f,
                    "table {}: {} records, {} readable, {} lost",
                    t.name,
                    t.declared,
                    t.readable,
                    t.lost()
                )?,
            }
            for d in &t.damage {
                writeln!(f, "{d}")?;
            }
        }
        let damaged_pages: usize =
            self.other.len() + self.tables.iter().map(|t| t.damage.len()).sum::<usize>();
        if self.healthy() {
            write!(f, "store: healthy ({} tables)", self.tables.len())
        } else {
            write!(
                f,
                "store: DAMAGED ({damaged_pages} page(s) refused, {} record(s) unreadable)",
                self.lost()
            )
        }
    }
}

/// What [`snapshot`] copied: records per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    /// (table, records copied), by table name.
    pub tables: Vec<(String, u64)>,
}

impl fmt::Display for SnapshotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, n) in &self.tables {
            writeln!(f, "table {name}: {n} records copied")?;
        }
        write!(
            f,
            "backup: {} tables, {} records",
            self.tables.len(),
            self.tables.iter().map(|t| t.1).sum::<u64>()
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the file as redb lays it out.

/// A B-tree root as a commit slot or a table definition records it.
#[derive(Debug, Clone, Copy)]
struct Root {
    page: u64,
    checksum: u128,
    length: u64,
}

impl Root {
    fn parse(b: &[u8]) -> Option<Root> {
        Some(Root { page: le_u64(b, 0)?, checksum: le_u128(b, 8)?, length: le_u64(b, 24)? })
    }
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}
fn le_u128(b: &[u8], at: usize) -> Option<u128> {
    Some(u128::from_le_bytes(b.get(at..at + 16)?.try_into().ok()?))
}

fn checksum(b: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128_with_seed(b, 0)
}

/// The open file and its geometry.
struct RawFile {
    file: File,
    len: u64,
    page_size: u64,
    region_bytes: u64,
    region_header_bytes: u64,
}

/// The primary commit of a file.
struct Commit {
    user: Option<Root>,
    system: Option<Root>,
}

impl RawFile {
    fn open(path: &Path) -> Result<(RawFile, Commit, Vec<String>, bool)> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MaintenanceError::Missing(path.to_owned()))
            }
            Err(e) => return Err(io(path)(e)),
        };
        let meta = file.metadata().map_err(io(path))?;
        if !meta.is_file() {
            return Err(MaintenanceError::NotRedb(path.to_owned()));
        }
        let len = meta.len();
        let mut head = [0u8; SUPER_HEADER_BYTES];
        if len < SUPER_HEADER_BYTES as u64 {
            return Err(MaintenanceError::NotRedb(path.to_owned()));
        }
        file.read_exact_at(&mut head, 0).map_err(io(path))?;
        if head.get(..MAGIC.len()) != Some(&MAGIC[..]) {
            return Err(MaintenanceError::NotRedb(path.to_owned()));
        }
        let unsupported = |detail: String| MaintenanceError::Unsupported { path: path.to_owned(), detail };
        let god = head[9];
        let page_size = u64::from(le_u32(&head, 12).unwrap_or(0));
        let region_header_pages = u64::from(le_u32(&head, 16).unwrap_or(0));
        let region_max_pages = u64::from(le_u32(&head, 20).unwrap_or(0));
        if !page_size.is_power_of_two() || !(512..=65_536).contains(&page_size) {
            return Err(unsupported(format!("page size {page_size}")));
        }
        if region_max_pages == 0 || region_max_pages > (1 << 20) || region_header_pages > (1 << 20) {
            return Err(unsupported(format!("region of {region_max_pages} pages")));
        }
        let mut notes = Vec::new();
        let mut damaged = false;
        if god & 2 != 0 {
            notes.push(
                "not closed cleanly (a node holds it, was killed, or exited without closing it): redb repairs its allocator state at the next open; not damage"
                    .into(),
            );
        }
        let primary = usize::from(god & 1);
        let slot_at = |i: usize| 64 + i * SLOT_BYTES;
        let slot_of = |i: usize| head.get(slot_at(i)..slot_at(i) + SLOT_BYTES).unwrap_or(&[]);
        let intact = |slot: &[u8]| {
            le_u128(slot, SLOT_BYTES - 16) == Some(checksum(slot.get(..SLOT_BYTES - 16).unwrap_or(&[])))
        };
        let mut slot = slot_of(primary);
        let version = slot.first().copied().unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(unsupported(format!("format version {version}, this build reads {FORMAT_VERSION}")));
        }
        if !intact(slot) {
            damaged = true;
            // redb itself falls back to the other slot (the commit before) in that case.
            let other = slot_of(1 - primary);
            if intact(other) && other.first() == Some(&FORMAT_VERSION) {
                slot = other;
                notes.push(format!(
                    "commit slot {primary} (the latest commit) fails its checksum: read from slot {} (the commit before it)",
                    1 - primary
                ));
            } else {
                notes.push("both commit slots fail their checksum: read from the latest one".into());
            }
        }
        let user = (slot.get(1) != Some(&0)).then(|| slot.get(8..40).and_then(Root::parse)).flatten();
        let system = (slot.get(2) != Some(&0)).then(|| slot.get(40..72).and_then(Root::parse)).flatten();
        let raw = RawFile {
            file,
            len,
            page_size,
            region_bytes: (region_header_pages + region_max_pages) * page_size,
            region_header_bytes: region_header_pages * page_size,
        };
        Ok((raw, Commit { user, system }, notes, damaged))
    }

    /// The byte range of page number `n` (redb's `PageNumber`: 20 bits index, 20 bits region,
    /// 5 bits order), if it lies inside the file.
    fn page_range(&self, n: u64) -> std::result::Result<(u64, u64), String> {
        let order = (n >> 59) as u32;
        if order > 20 {
            return Err(format!("page number {n:#x} has order {order}"));
        }
        let index = n & (0x000F_FFFF >> order);
        let region = (n >> 20) & 0x000F_FFFF;
        let len = self.page_size << order;
        let start = self
            .page_size
            .checked_add(region.checked_mul(self.region_bytes).ok_or("page offset overflows")?)
            .and_then(|s| s.checked_add(self.region_header_bytes))
            .and_then(|s| s.checked_add(index.checked_mul(len)?))
            .ok_or("page offset overflows")?;
        if len > MAX_PAGE_BYTES {
            return Err(format!("page of {len} bytes is larger than {MAX_PAGE_BYTES}"));
        }
        match start.checked_add(len) {
            Some(end) if end <= self.len => Ok((start, len)),
            _ => Err(format!(
                "page at offset {start} ({len} bytes) lies beyond the end of the file ({})",
                self.len
            )),
        }
    }
}

/// What a walk tells its caller, page by page.
enum Step<'p> {
    /// A record of a page whose checksum matched.
    Entry(&'p [u8], &'p [u8]),
    /// A page refused: everything under it is lost.
    Damaged { offset: u64, len: u64, kind: &'static str, reason: String },
}

/// Ranges of the keys and values of a leaf, and the end of the checksummed bytes.
type LeafLayout = (usize, Vec<((usize, usize), (usize, usize))>);

fn leaf_layout(p: &[u8], fk: Option<usize>, fv: Option<usize>) -> Option<LeafLayout> {
    let n = usize::from(le_u16(p, 2)?);
    if n == 0 {
        return None;
    }
    let key_section = 4 + if fk.is_none() { 4 * n } else { 0 } + if fv.is_none() { 4 * n } else { 0 };
    let key_end = |i: usize| -> Option<usize> {
        match fk {
            Some(w) => key_section.checked_add(w.checked_mul(i + 1)?),
            None => le_u32(p, 4 + 4 * i).map(|v| v as usize),
        }
    };
    let last_key_end = key_end(n - 1)?;
    let value_end = |i: usize| -> Option<usize> {
        match fv {
            Some(w) => last_key_end.checked_add(w.checked_mul(i + 1)?),
            None => le_u32(p, 4 + 4 * i + if fk.is_none() { 4 * n } else { 0 }).map(|v| v as usize),
        }
    };
    let mut out = Vec::with_capacity(n);
    let (mut k0, mut v0) = (key_section, last_key_end);
    for i in 0..n {
        let (k1, v1) = (key_end(i)?, value_end(i)?);
        if k1 < k0 || v1 < v0 || v1 > p.len() {
            return None;
        }
        out.push(((k0, k1), (v0, v1)));
        (k0, v0) = (k1, v1);
    }
    Some((v0, out))
}

/// Children (page, checksum) of a branch, and the end of the checksummed bytes.
fn branch_layout(p: &[u8], fk: Option<usize>) -> Option<(usize, Vec<(u64, u128)>)> {
    let keys = usize::from(le_u16(p, 2)?);
    if keys == 0 {
        return None;
    }
    let children = keys + 1;
    let ends_at = 8 + 24 * children;
    let end = match fk {
        Some(w) => ends_at.checked_add(w.checked_mul(keys)?)?,
        None => le_u32(p, ends_at + 4 * (keys - 1))? as usize,
    };
    if end > p.len() || end < ends_at {
        return None;
    }
    let mut out = Vec::with_capacity(children);
    for i in 0..children {
        out.push((le_u64(p, 8 + 16 * children + 8 * i)?, le_u128(p, 8 + 16 * i)?));
    }
    Some((end, out))
}

/// Walks the B-tree under `root` in key order, calling `f` for every record of a page whose
/// checksum matched and once for every page refused. `budget` bounds the pages visited (a file
/// holds no more), `path` catches cycles.
fn walk<E>(
    raw: &RawFile,
    page: u64,
    expected: u128,
    widths: (Option<usize>, Option<usize>),
    path: &mut Vec<u64>,
    budget: &mut u64,
    f: &mut dyn FnMut(Step<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let refuse = |offset: u64, len: u64, kind: &'static str, reason: String| Step::Damaged {
        offset,
        len,
        kind,
        reason,
    };
    let (offset, len) = match raw.page_range(page) {
        Ok(r) => r,
        Err(reason) => return f(refuse(0, 0, "unknown", reason)),
    };
    if path.len() >= MAX_TREE_DEPTH || path.contains(&page) || *budget == 0 {
        return f(refuse(offset, len, "unknown", "page pointer loops or the tree is too deep".into()));
    }
    *budget -= 1;
    let mut buf = vec![0u8; len as usize];
    if let Err(e) = raw.file.read_exact_at(&mut buf, offset) {
        return f(refuse(offset, len, "unknown", format!("read failed: {e}")));
    }
    let kind = match buf.first() {
        Some(&LEAF) => "leaf",
        Some(&BRANCH) => "branch",
        _ => "unknown",
    };
    match kind {
        "leaf" => match leaf_layout(&buf, widths.0, widths.1) {
            Some((end, entries)) if buf.get(..end).map(checksum) == Some(expected) => {
                for ((k0, k1), (v0, v1)) in entries {
                    if let (Some(k), Some(v)) = (buf.get(k0..k1), buf.get(v0..v1)) {
                        f(Step::Entry(k, v))?;
                    }
                }
                Ok(())
            }
            Some(_) => f(refuse(offset, len, kind, "checksum mismatch".into())),
            None => f(refuse(offset, len, kind, "malformed leaf layout".into())),
        },
        "branch" => match branch_layout(&buf, widths.0) {
            Some((end, children)) if buf.get(..end).map(checksum) == Some(expected) => {
                path.push(page);
                for (child, sum) in children {
                    walk(raw, child, sum, widths, path, budget, f)?;
                }
                path.pop();
                Ok(())
            }
            Some(_) => f(refuse(offset, len, kind, "checksum mismatch".into())),
            None => f(refuse(offset, len, kind, "malformed branch layout".into())),
        },
        _ => f(refuse(offset, len, kind, format!("unknown page type {}", buf.first().copied().unwrap_or(0)))),
    }
}

/// A table as the table list (the user root's tree) defines it.
struct TableDef {
    name: String,
    normal: bool,
    length: u64,
    root: Option<Root>,
    fixed_key: Option<usize>,
    fixed_value: Option<usize>,
    key_type: String,
    value_type: String,
}

fn parse_def(name: &[u8], v: &[u8]) -> Option<TableDef> {
    let fixed = |at: usize| -> Option<Option<usize>> {
        Some(if *v.get(at)? != 0 { Some(le_u32(v, at + 1)? as usize) } else { None })
    };
    let key_type_len = le_u32(v, 60)? as usize;
    let key_type = v.get(64..64usize.checked_add(key_type_len)?)?;
    let value_type = v.get(64 + key_type_len..)?;
    // A type name is stored as one classification byte, then the name.
    let type_name = |b: &[u8]| String::from_utf8_lossy(b.get(1..).unwrap_or(&[])).into_owned();
    Some(TableDef {
        name: String::from_utf8_lossy(name).into_owned(),
        normal: *v.first()? == NORMAL_TABLE,
        length: le_u64(v, 1)?,
        root: if *v.get(9)? != 0 { Some(Root::parse(v.get(10..42)?)?) } else { None },
        fixed_key: fixed(42)?,
        fixed_value: fixed(47)?,
        key_type: type_name(key_type),
        value_type: type_name(value_type),
    })
}

fn show_key(b: &[u8], fixed: Option<usize>) -> String {
    if fixed == Some(8) {
        if let Ok(a) = <[u8; 8]>::try_from(b) {
            return u64::from_le_bytes(a).to_string();
        }
    }
    let s: String = String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .take(MAX_KEY_SHOWN)
        .collect();
    format!("{s:?}")
}

/// Gets every readable (key, value) of a tree, raw.
type Copier<'a, E> = dyn FnMut(&[u8], &[u8]) -> Result<(), E> + 'a;

/// Follows one tree, turning steps into a [`TableReport`]'s counts and gaps; `copy` gets every
/// readable record.
fn read_tree<E>(
    raw: &RawFile,
    name: &str,
    root: Option<Root>,
    widths: (Option<usize>, Option<usize>),
    declared: u64,
    copy: &mut Copier<'_, E>,
) -> Result<TableReport, E> {
    let mut report =
        TableReport { name: name.to_owned(), declared, readable: 0, damage: Vec::new(), skipped: None };
    let Some(root) = root else {
        return Ok(report);
    };
    let mut last_key: Option<String> = None;
    let mut open_gaps: Vec<usize> = Vec::new();
    let mut budget = raw.len / raw.page_size + 1;
    walk(raw, root.page, root.checksum, widths, &mut Vec::new(), &mut budget, &mut |step| {
        match step {
            Step::Entry(k, v) => {
                copy(k, v)?;
                report.readable += 1;
                if !open_gaps.is_empty() {
                    let shown = show_key(k, widths.0);
                    for i in open_gaps.drain(..) {
                        if let Some(d) = report.damage.get_mut(i) {
                            d.before = Some(shown.clone());
                        }
                    }
                }
                last_key = Some(show_key(k, widths.0));
            }
            Step::Damaged { offset, len, kind, reason } => {
                if report.damage.len() < MAX_DAMAGE_LISTED {
                    open_gaps.push(report.damage.len());
                    report.damage.push(Damage {
                        table: name.to_owned(),
                        offset,
                        len,
                        kind,
                        reason,
                        after: last_key.clone(),
                        before: None,
                    });
                }
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// The table list of the primary commit, and damage in it.
fn table_list(raw: &RawFile, commit: &Commit) -> (Vec<TableDef>, TableReport) {
    let mut defs = Vec::new();
    let declared = commit.user.map_or(0, |r| r.length);
    let report = read_tree::<std::convert::Infallible>(
        raw,
        "(table list)",
        commit.user,
        (None, None),
        declared,
        &mut |k, v| {
            if let Some(d) = parse_def(k, v) {
                defs.push(d);
            }
            Ok(())
        },
    );
    let report = match report {
        Ok(r) => r,
        Err(never) => match never {},
    };
    (defs, report)
}

/// Verifies redb's system trees (allocator state, savepoints): their damage makes redb refuse
/// or repair the file even though no record of ours is in them.
fn system_damage(raw: &RawFile, commit: &Commit) -> Vec<Damage> {
    let (defs, list) = table_list(raw, &Commit { user: commit.system, system: None });
    let mut out: Vec<Damage> =
        list.damage.into_iter().map(|d| Damage { table: "(system)".into(), ..d }).collect();
    for def in defs {
        let r = read_tree::<std::convert::Infallible>(
            raw,
            &format!("(system) {}", def.name),
            def.root,
            (def.fixed_key, def.fixed_value),
            def.length,
            &mut |_, _| Ok(()),
        );
        match r {
            Ok(r) => out.extend(r.damage),
            Err(never) => match never {},
        }
    }
    out
}

/// Fails with [`MaintenanceError::InUse`] when a running node holds the file; otherwise keeps
/// a read-only handle (held while the caller reads, so no node starts writing meanwhile) if
/// redb could open it read-only.
fn not_in_use(path: &Path) -> Result<Option<redb::ReadOnlyDatabase>> {
    // A damaged file may make redb panic during the open (it trusts a cleanly closed file):
    // the panic is caught and silenced (its message would garble the one-line error), and the
    // file is then simply not held.
    let opened = quietly(|| redb::Builder::new().open_read_only(path));
    match opened {
        Some(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(MaintenanceError::InUse(path.to_owned())),
        Some(Ok(db)) => Ok(Some(db)),
        _ => Ok(None),
    }
}

/// Runs `f`, turning a panic into `None` without printing it.
fn quietly<T>(f: impl FnOnce() -> T) -> Option<T> {
    crate::failure::catch_panic(true, f).ok()
}

/// Verifies every page of the primary commit of the store file at `path` against its
/// checksum, without writing to it, and reports per table the records declared and readable
/// and every page refused. Fails only when the file is missing, not a redb file, in a format
/// this build does not read, or in use by a running node.
pub fn check(path: &Path) -> Result<Report> {
    let (raw, commit, notes, header_damaged) = RawFile::open(path)?;
    let _held = not_in_use(path)?;
    let (defs, list) = table_list(&raw, &commit);
    let mut report = Report { notes, header_damaged, other: list.damage, ..Report::default() };
    if list.readable != list.declared && report.other.is_empty() {
        report.header_damaged = true;
        report
            .notes
            .push(format!("the table list declares {} tables, {} readable", list.declared, list.readable));
    }
    report.other.extend(system_damage(&raw, &commit));
    for def in defs {
        let mut t = match read_tree::<std::convert::Infallible>(
            &raw,
            &def.name,
            def.root,
            (def.fixed_key, def.fixed_value),
            def.length,
            &mut |_, _| Ok(()),
        ) {
            Ok(t) => t,
            Err(never) => match never {},
        };
        if !def.normal {
            t.skipped = Some("a multimap table (Hush writes none)".into());
        }
        report.tables.push(t);
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Writing a fresh store.

/// Something done once per known table, with its types.
trait PerTable {
    type Out;
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<'static, K, V>,
    ) -> Self::Out;
}

/// Calls `v` with the definition of the table named `name`, if Hush defines one.
fn with_table<P: PerTable>(name: &str, v: &mut P) -> Option<P::Out> {
    Some(match name {
        "tenants" => v.table(TENANTS),
        "users" => v.table(USERS),
        "devices" => v.table(DEVICES),
        "sessions" => v.table(SESSIONS),
        "session_ids" => v.table(SESSION_IDS),
        "queue" => v.table(QUEUE_V1),
        "queue_by_seq" => v.table(QUEUE),
        "meta" => v.table(META),
        "user_sessions" => v.table(USER_SESSIONS),
        "active_sessions" => v.table(ACTIVE_SESSIONS),
        "audit" => v.table(AUDIT),
        "kv" => v.table(KV),
        "queue_refs" => v.table(QUEUE_REFS),
        "blobs" => v.table(BLOBS),
        "blob_refs" => v.table(BLOB_REFS),
        _ => return None,
    })
}

/// A new file under a temporary name next to `to`, created 0600, removed on drop unless
/// [`Staged::publish`]ed.
struct Staged {
    tmp: PathBuf,
    to: PathBuf,
    done: bool,
}

impl Staged {
    fn new(to: &Path) -> Result<(Staged, File)> {
        if to.symlink_metadata().is_ok() {
            return Err(MaintenanceError::TargetExists(to.to_owned()));
        }
        let dir = match to.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "store".into());
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(io(&tmp))?;
        Ok((Staged { tmp, to: to.to_owned(), done: false }, file))
    }

    /// Syncs the file, links it to its final name (failing if that appeared meanwhile) and
    /// syncs the folder.
    fn publish(mut self) -> Result<()> {
        File::open(&self.tmp).and_then(|f| f.sync_all()).map_err(io(&self.tmp))?;
        std::fs::hard_link(&self.tmp, &self.to).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                MaintenanceError::TargetExists(self.to.clone())
            } else {
                io(&self.to)(e)
            }
        })?;
        let _ = std::fs::remove_file(&self.tmp);
        self.done = true;
        if let Some(dir) = self.to.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

struct CopyTyped<'a> {
    from: &'a redb::ReadTransaction,
    to: &'a redb::WriteTransaction,
    name: &'a str,
}

impl PerTable for CopyTyped<'_> {
    type Out = Result<u64>;
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<'static, K, V>,
    ) -> Result<u64> {
        let src = self.from.open_table(def).map_err(|e| backend(format!("table {}: {e}", self.name)))?;
        let mut dst = self.to.open_table(def).map_err(backend)?;
        let mut n = 0u64;
        for item in src.iter().map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            dst.insert(k.value(), v.value()).map_err(backend)?;
            n += 1;
        }
        debug_assert_eq!(Some(n), src.len().ok());
        Ok(n)
    }
}

/// Copies every table of `db`'s latest commit, inside one read transaction (a consistent
/// snapshot even while another thread commits), into a new store file at `to` (0600), which
/// must not exist. A table Hush does not define makes the backup fail rather than be dropped.
pub fn snapshot(db: &Database, to: &Path) -> Result<SnapshotReport> {
    use redb::ReadableDatabase;
    let read = db.begin_read().map_err(backend)?;
    let (staged, file) = Staged::new(to)?;
    let report = {
        let out = new_database(file)?;
        let write = out.begin_write().map_err(backend)?;
        let mut report = SnapshotReport::default();
        for handle in read.list_tables().map_err(backend)? {
            let name = handle.name().to_owned();
            let n = with_table(&name, &mut CopyTyped { from: &read, to: &write, name: &name })
                .ok_or_else(|| backend(format!("unknown table {name}: this build cannot back it up")))??;
            report.tables.push((name, n));
        }
        write.commit().map_err(backend)?;
        out.close().map_err(backend)?;
        report
    };
    staged.publish()?;
    Ok(report)
}

/// [`snapshot`] of the store file at `from` when no node holds it (opened through redb, which
/// repairs its allocator state first if the node was killed; a damaged file should go through
/// [`check`] and [`salvage`] instead).
pub fn snapshot_file(from: &Path, to: &Path) -> Result<SnapshotReport> {
    // Refuse a missing or foreign file before redb would create or rewrite it.
    drop(RawFile::open(from)?);
    let db = match quietly(|| Database::open(from)) {
        Some(Ok(db)) => db,
        Some(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
            return Err(backend(format!(
                "{} is held by a running node that does not answer on its control socket; stop it first",
                from.display()
            )))
        }
        Some(Err(e)) => return Err(backend(format!("{}: {e}", from.display()))),
        None => {
            return Err(backend(format!(
                "{}: redb failed on this file; run `hushd store check`",
                from.display()
            )))
        }
    };
    snapshot(&db, to)
}

struct SalvageTable<'a> {
    raw: &'a RawFile,
    def: &'a TableDef,
    to: &'a redb::WriteTransaction,
}

impl PerTable for SalvageTable<'_> {
    type Out = Result<TableReport>;
    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<'static, K, V>,
    ) -> Result<TableReport> {
        let d = self.def;
        let declared = TableReport {
            name: d.name.clone(),
            declared: d.length,
            readable: 0,
            damage: Vec::new(),
            skipped: None,
        };
        // The records are decoded with our types: they must be the types the file holds.
        if !d.normal
            || d.fixed_key != K::fixed_width()
            || d.fixed_value != V::fixed_width()
            || d.key_type != K::type_name().name()
            || d.value_type != V::type_name().name()
        {
            return Ok(TableReport {
                skipped: Some(format!(
                    "stored as {}<{}, {}>, this build defines {def}",
                    d.name, d.key_type, d.value_type
                )),
                ..declared
            });
        }
        let mut dst = self.to.open_table(def).map_err(backend)?;
        // Every record comes from a page whose checksum matched, so it holds the bytes redb
        // wrote and `from_bytes` decodes them as it would.
        read_tree(self.raw, &d.name, d.root, (d.fixed_key, d.fixed_value), d.length, &mut |k, v| {
            dst.insert(K::from_bytes(k), V::from_bytes(v)).map(drop).map_err(backend)
        })
    }
}

/// Copies every readable record of the store file at `from` (which may be damaged; it is only
/// read) into a new store `<to>/hush.redb`; `to` must not exist or be an empty folder (created
/// 0700). Per table, the report gives the records declared, copied and lost, and the key gaps.
/// The queue's sequence counter is raised above every sequence number copied, so a node on the
/// salvaged store never reuses one.
pub fn salvage(from: &Path, to: &Path) -> Result<Report> {
    let (raw, commit, notes, header_damaged) = RawFile::open(from)?;
    let _held = not_in_use(from)?;
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(MaintenanceError::TargetExists(to.to_owned()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return Err(MaintenanceError::TargetExists(to.to_owned())),
    }
    let (defs, list) = table_list(&raw, &commit);
    let mut report = Report { notes, header_damaged, other: list.damage, ..Report::default() };
    let created = !to.exists();
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(to).map_err(io(to))?;
    let result = (|| -> Result<()> {
        let (staged, file) = Staged::new(&to.join(STORE_FILE))?;
        let out = new_database(file)?;
        let write = out.begin_write().map_err(backend)?;
        for def in &defs {
            let copied = quietly(|| with_table(&def.name, &mut SalvageTable { raw: &raw, def, to: &write }));
            let t = match copied {
                Some(Some(r)) => r?,
                Some(None) => TableReport {
                    name: def.name.clone(),
                    declared: def.length,
                    readable: 0,
                    damage: Vec::new(),
                    skipped: Some("not a table this build defines".into()),
                },
                None => return Err(backend(format!("copying table {} failed unexpectedly", def.name))),
            };
            report.tables.push(t);
        }
        let fixed = repair_shared(&write)?;
        if fixed.dropped_refs > 0 {
            if let Some(t) = report.tables.iter_mut().find(|t| t.name == "queue_refs") {
                t.readable = t.readable.saturating_sub(fixed.dropped_refs);
            }
            report.notes.push(format!(
                "queue_refs: {} group envelope(s) dropped: their shared content was in a lost page",
                fixed.dropped_refs
            ));
        }
        if fixed.counts_fixed > 0 || fixed.orphans > 0 {
            report.notes.push(format!(
                "blob_refs: rebuilt from queue_refs ({} count(s) corrected, {} unreferenced content(s) dropped)",
                fixed.counts_fixed, fixed.orphans
            ));
        }
        if let Some(n) = raise_next_seq(&write)? {
            report
                .notes
                .push(format!("the queue's next sequence number was raised to {n} (above every one copied)"));
        }
        write.commit().map_err(backend)?;
        out.close().map_err(backend)?;
        staged.publish()
    })();
    if result.is_err() && created {
        let _ = std::fs::remove_dir(to);
    }
    result?;
    Ok(report)
}

/// What [`repair_shared`] changed.
struct SharedRepair {
    dropped_refs: u64,
    counts_fixed: u64,
    orphans: u64,
}

/// Makes the shared contents of a salvaged store consistent, as the node's reference counting
/// expects: a queued group envelope whose content was lost is dropped (a fetch would fail on it
/// and block its device's whole queue), every content's count is recomputed from the references
/// copied (a lost count page would make the first ack delete a content others still need), and
/// a content nobody refers to any more is dropped (nothing would ever release it).
fn repair_shared(w: &redb::WriteTransaction) -> Result<SharedRepair> {
    use hush_protocol::ids::DeviceAddress;
    let mut refs = w.open_table(QUEUE_REFS).map_err(backend)?;
    let mut blobs = w.open_table(BLOBS).map_err(backend)?;
    let mut counts = w.open_table(BLOB_REFS).map_err(backend)?;
    let mut per_blob: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    let mut dangling = Vec::new();
    for item in refs.iter().map_err(backend)? {
        let (k, v) = item.map_err(backend)?;
        // The value starts with the device address, then the content's blob id.
        let blob = postcard::take_from_bytes::<DeviceAddress>(v.value())
            .and_then(|(_, rest)| postcard::take_from_bytes::<u64>(rest))
            .map(|(b, _)| b)
            .ok();
        match blob {
            Some(b) if blobs.get(b).map_err(backend)?.is_some() => *per_blob.entry(b).or_default() += 1,
            _ => dangling.push(k.value()),
        }
    }
    for seq in &dangling {
        refs.remove(seq).map_err(backend)?;
    }
    let stored: std::collections::BTreeMap<u64, u64> = counts
        .iter()
        .map_err(backend)?
        .map(|i| i.map(|(k, v)| (k.value(), v.value())))
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    let mut counts_fixed = 0u64;
    for (blob, n) in &stored {
        if per_blob.get(blob) != Some(n) {
            counts_fixed += 1;
            if !per_blob.contains_key(blob) {
                counts.remove(blob).map_err(backend)?;
            }
        }
    }
    for (blob, n) in &per_blob {
        if stored.get(blob) != Some(n) {
            counts.insert(blob, n).map_err(backend)?;
            if !stored.contains_key(blob) {
                counts_fixed += 1;
            }
        }
    }
    let orphans: Vec<u64> = blobs
        .iter()
        .map_err(backend)?
        .map(|i| i.map(|(k, _)| k.value()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?
        .into_iter()
        .filter(|b| !per_blob.contains_key(b))
        .collect();
    for b in &orphans {
        blobs.remove(b).map_err(backend)?;
    }
    Ok(SharedRepair { dropped_refs: dangling.len() as u64, counts_fixed, orphans: orphans.len() as u64 })
}

/// Makes `meta.next_seq` greater than every sequence number (and blob id) in the store: a lost
/// `meta` page would otherwise let the node hand out numbers of envelopes still queued.
fn raise_next_seq(w: &redb::WriteTransaction) -> Result<Option<u64>> {
    let mut top = 0u64;
    for def in [QUEUE, QUEUE_REFS, BLOBS] {
        let t = w.open_table(def).map_err(backend)?;
        let last = t.last().map_err(backend)?.map(|(k, _)| k.value());
        top = top.max(last.unwrap_or(0));
    }
    let mut meta = w.open_table(META).map_err(backend)?;
    let next = meta.get("next_seq").map_err(backend)?.map(|v| v.value()).unwrap_or(1);
    if top >= next {
        meta.insert("next_seq", top + 1).map_err(backend)?;
        return Ok(Some(top + 1));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use redb::{ReadableDatabase, ReadableTableMetadata};

    const RECORDS: u64 = 2_000;

    /// A store with a queue of several leaves, a user and the sequence counter.
    fn make(path: &Path) {
        let db = Database::create(path).unwrap();
        let w = db.begin_write().unwrap();
        {
            let mut q = w.open_table(QUEUE).unwrap();
            for seq in 1..=RECORDS {
                q.insert(seq, format!("envelope-{seq:06}-{}", "x".repeat(90)).as_bytes()).unwrap();
            }
            let mut users = w.open_table(USERS).unwrap();
            users.insert(("t1", "bob"), b"bob".as_slice()).unwrap();
            let mut meta = w.open_table(META).unwrap();
            meta.insert("next_seq", RECORDS + 1).unwrap();
            meta.insert("schema_version", crate::embedded::SCHEMA_VERSION).unwrap();
        }
        w.commit().unwrap();
    }

    /// Offset of the second child of the queue's root (a leaf: the tree has two levels).
    fn second_queue_leaf(path: &Path) -> u64 {
        let (raw, commit, _, _) = RawFile::open(path).unwrap();
        let (defs, _) = table_list(&raw, &commit);
        let q = defs.iter().find(|d| d.name == "queue_by_seq").unwrap();
        let root = q.root.unwrap();
        let (off, len) = raw.page_range(root.page).unwrap();
        let mut buf = vec![0u8; len as usize];
        raw.file.read_exact_at(&mut buf, off).unwrap();
        assert_eq!(buf[0], BRANCH, "the queue's root is a branch");
        let (_, children) = branch_layout(&buf, Some(8)).unwrap();
        let (off, len) = raw.page_range(children[1].0).unwrap();
        raw.file.read_exact_at(&mut buf[..len as usize], off).unwrap();
        assert_eq!(buf[0], LEAF);
        off
    }

    fn flip(path: &Path, at: u64) {
        let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
    }

    #[test]
    fn a_healthy_file_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        make(&path);
        let r = check(&path).unwrap();
        assert!(r.healthy(), "{r}");
        assert_eq!(r.table("queue_by_seq").unwrap().readable, RECORDS);
        assert_eq!(r.table("users").unwrap().readable, 1);
        assert!(r.to_string().ends_with("store: healthy (3 tables)"), "{r}");
    }

    #[test]
    fn a_flipped_byte_is_found_and_salvage_loses_only_its_page() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        make(&path);
        let leaf = second_queue_leaf(&path);
        flip(&path, leaf + 300);
        let r = check(&path).unwrap();
        assert!(!r.healthy());
        let q = r.table("queue_by_seq").unwrap();
        assert_eq!(q.damage.len(), 1, "{r}");
        assert_eq!(q.damage[0].offset, leaf);
        assert_eq!(q.damage[0].reason, "checksum mismatch");
        assert!(q.lost() > 0 && q.lost() < RECORDS / 4, "{r}");
        assert!(r.table("users").unwrap().intact());

        let out = dir.path().join("salvaged");
        let s = salvage(&path, &out).unwrap();
        assert_eq!(s.table("queue_by_seq").unwrap().lost(), q.lost());
        let db = Database::open(out.join(STORE_FILE)).unwrap();
        let t = db.begin_read().unwrap();
        let queue = t.open_table(QUEUE).unwrap();
        assert_eq!(queue.len().unwrap(), RECORDS - q.lost());
        // The gap is one run of keys, and the report names its edges.
        let keys: Vec<u64> = queue.iter().unwrap().map(|i| i.unwrap().0.value()).collect();
        let gap: Vec<u64> = (1..=RECORDS).filter(|k| !keys.contains(k)).collect();
        assert_eq!(gap.len() as u64, q.lost());
        assert_eq!(gap.last().unwrap() - gap[0] + 1, gap.len() as u64, "one contiguous run");
        assert_eq!(q.damage[0].after.as_deref(), Some((gap[0] - 1).to_string().as_str()));
        assert_eq!(q.damage[0].before.as_deref(), Some((gap.last().unwrap() + 1).to_string().as_str()));
        for k in keys {
            let v = queue.get(k).unwrap().unwrap();
            assert!(v.value().starts_with(format!("envelope-{k:06}-").as_bytes()));
        }
        assert_eq!(t.open_table(META).unwrap().get("next_seq").unwrap().unwrap().value(), RECORDS + 1);
        assert_eq!(t.open_table(USERS).unwrap().len().unwrap(), 1);
        drop(t);
        drop(db);
        assert!(check(&out.join(STORE_FILE)).unwrap().healthy());
    }

    #[test]
    fn snapshot_copies_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        make(&path);
        let db = Database::open(&path).unwrap();
        let to = dir.path().join("backup.redb");
        let r = snapshot(&db, &to).unwrap();
        assert!(r.tables.contains(&("queue_by_seq".to_owned(), RECORDS)), "{r}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&to).unwrap().permissions().mode() & 0o777, FILE_MODE);
        assert!(matches!(snapshot(&db, &to), Err(MaintenanceError::TargetExists(_))));
        drop(db);
        assert!(check(&to).unwrap().healthy());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn a_damaged_branch_loses_its_subtree_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        make(&path);
        let (raw, commit, _, _) = RawFile::open(&path).unwrap();
        let (defs, _) = table_list(&raw, &commit);
        let root = defs.iter().find(|d| d.name == "queue_by_seq").unwrap().root.unwrap();
        let (off, _) = raw.page_range(root.page).unwrap();
        drop(raw);
        flip(&path, off + 40);
        let r = check(&path).unwrap();
        let q = r.table("queue_by_seq").unwrap();
        assert_eq!((q.readable, q.lost(), q.damage.len()), (0, RECORDS, 1), "{r}");
        assert_eq!(
            (q.damage[0].kind, q.damage[0].after.as_ref(), q.damage[0].before.as_ref()),
            ("branch", None, None)
        );
        assert!(r.table("users").unwrap().intact() && r.table("meta").unwrap().intact());
        let s = salvage(&path, &dir.path().join("out")).unwrap();
        assert_eq!(s.lost(), RECORDS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn salvage_drops_group_envelopes_whose_content_is_lost() {
        use crate::conformance::{addr, envelopes};
        use crate::{QueueStore, SharedEnvelope};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        let (d1, d2) = (addr("t1", "bob", 1), addr("t1", "ann", 1));
        {
            let store = crate::embedded::EmbeddedStore::open(&path).unwrap();
            store.enqueue(envelopes(&d1, 3)).await.unwrap();
            let group = envelopes(&d1, 1).remove(0).envelope;
            store
                .enqueue_shared(SharedEnvelope { to: vec![d1.clone(), d2.clone()], envelope: group })
                .await
                .unwrap();
            // Written through the store, then read back by a snapshot: the file is complete.
            store.snapshot_to(&dir.path().join("copy.redb")).await.unwrap();
        }
        let copy = dir.path().join("copy.redb");
        // The blobs table is one leaf (its root): damage it.
        let (raw, commit, _, _) = RawFile::open(&copy).unwrap();
        let (defs, _) = table_list(&raw, &commit);
        let root = defs.iter().find(|d| d.name == "blobs").unwrap().root.unwrap();
        let (off, _) = raw.page_range(root.page).unwrap();
        drop(raw);
        flip(&copy, off + 30);
        let out = dir.path().join("out");
        let r = salvage(&copy, &out).unwrap();
        assert_eq!(r.table("blobs").unwrap().lost(), 1, "{r}");
        assert_eq!(r.table("queue_refs").unwrap().lost(), 2, "{r}");
        assert!(r.to_string().contains("2 group envelope(s) dropped"), "{r}");
        let store = crate::embedded::EmbeddedStore::open(&out.join(STORE_FILE)).unwrap();
        assert_eq!(store.fetch(&d1, 0, 10).await.unwrap().len(), 3, "the 1:1 envelopes, and no error");
        assert!(store.fetch(&d2, 0, 10).await.unwrap().is_empty());
        assert_eq!(store.shared_contents().await.unwrap(), 0);
    }

    #[test]
    fn a_damaged_commit_slot_falls_back_to_the_commit_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hush.redb");
        make(&path);
        let god = std::fs::read(&path).unwrap()[9];
        flip(&path, 64 + 128 * u64::from(god & 1) + 20);
        let r = check(&path).unwrap();
        assert!(!r.healthy());
        assert!(r.to_string().contains("fails its checksum: read from slot"), "{r}");
        salvage(&path, &dir.path().join("out")).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_table_of_the_embedded_store_is_known_here() {
        // A table added to `embedded` but not to `with_table` would make every backup fail.
        let dir = tempfile::tempdir().unwrap();
        let store = crate::embedded::EmbeddedStore::open(&dir.path().join("hush.redb")).unwrap();
        let r = store.snapshot_to(&dir.path().join("backup.redb")).await.unwrap();
        assert!(r.tables.len() >= 14, "{r}");
    }

    #[test]
    fn bad_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.redb");
        assert!(matches!(check(&missing), Err(MaintenanceError::Missing(_))));
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a store, but long enough to hold a header ".repeat(20)).unwrap();
        assert!(matches!(check(&text), Err(MaintenanceError::NotRedb(_))));
        assert!(matches!(salvage(&text, &dir.path().join("out")), Err(MaintenanceError::NotRedb(_))));
        assert!(!dir.path().join("out").exists());
        let path = dir.path().join("hush.redb");
        make(&path);
        std::fs::create_dir(dir.path().join("full")).unwrap();
        std::fs::write(dir.path().join("full/x"), b"x").unwrap();
        assert!(matches!(salvage(&path, &dir.path().join("full")), Err(MaintenanceError::TargetExists(_))));
        let db = Database::open(&path).unwrap();
        assert!(matches!(check(&path), Err(MaintenanceError::InUse(_))));
        drop(db);
    }
}
