//! `manifest.yml` as af 0.3.22 reads it (`commands/base.rb`, `manifest_helper.rb`): found in
//! the app path or any directory above it (or given with `-m`), `inherit`ed files deep-merged
//! under it, `${symbol}` references resolved lexically (`${name}`, any key, `properties:`,
//! `${target-base}`, `${target-url}`, `${random-word}`), and several applications ordered by
//! `depends-on`.

use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

use crate::context::expand_path;
use crate::error::{CmdResult, Failure};
use crate::json::Json;

pub(crate) const MANIFEST: &str = "manifest.yml";

// Limits af does not have (it overflows the stack, or walks an exponential expansion, instead;
// COMPATIBILITY.md): a manifest is a few dozen lines, so each is far beyond any real one, and a
// clear error beats a hang.

/// The most files a manifest may read, itself and all it `inherit`s.
const MOST_MANIFEST_FILES: usize = 64;
/// How deeply a manifest's collections may nest, aliases expanded.
const DEEPEST_NESTING: usize = 64;
/// How many values a manifest may hold, aliases expanded (a "billion laughs" holds 10⁹).
const MOST_VALUES: usize = 100_000;
/// How deeply symbols may refer to symbols that refer to symbols.
const DEEPEST_SYMBOLS: usize = 64;
/// The longest a value may grow by resolving its symbols.
const LONGEST_VALUE: usize = 64 * 1024;

/// The manifest af would use: `-m FILE` as given, else `manifest.yml` in `path` or the nearest
/// directory above it.
pub(crate) fn find(option: Option<&str>, path: &Path) -> Option<PathBuf> {
    if let Some(file) = option {
        return Some(PathBuf::from(file));
    }
    let mut dir = Some(path);
    while let Some(where_) = dir {
        let candidate = where_.join(MANIFEST);
        if candidate.exists() {
            return Some(candidate);
        }
        dir = where_.parent();
    }
    None
}

/// A YAML document as the JSON-like tree af works on (keys as strings, order kept).
pub(crate) fn yaml_to_json(yaml: &Yaml) -> Json {
    match yaml {
        Yaml::Real(text) => text
            .parse::<f64>()
            .map_or_else(|_| Json::Str(text.clone()), Json::Float),
        Yaml::Integer(i) => Json::Int(*i),
        Yaml::String(s) => Json::Str(s.clone()),
        Yaml::Boolean(b) => Json::Bool(*b),
        Yaml::Array(items) => Json::Array(items.iter().map(yaml_to_json).collect()),
        Yaml::Hash(hash) => Json::Object(
            hash.iter()
                .map(|(k, v)| (yaml_to_json(k).to_ruby_s(), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Json::Null,
    }
}

/// A scalar's text (`None` for null and collections).
pub(crate) fn yaml_scalar_text(yaml: &Yaml) -> Option<String> {
    match yaml {
        Yaml::Real(s) | Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How manifest files are read: the file system, or (for the fuzz target) anything else.
pub(crate) type ReadFile<'r> = &'r dyn Fn(&Path) -> std::io::Result<String>;

/// Reads one YAML file into a tree (an empty file is an empty manifest).
fn read_yaml(file: &Path, read: ReadFile<'_>) -> CmdResult<Json> {
    let text = read(file).map_err(|e| {
        Failure::message(format!(
            "{} @ rb_sysopen - {}",
            io_message(&e),
            file.display()
        ))
    })?;
    let docs = check_size(&text)
        .and_then(|()| yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| e.to_string()))
        .map_err(|e| Failure::message(format!("({}): {e}", file.display())))?;
    Ok(match docs.first().map(yaml_to_json) {
        Some(doc @ Json::Object(_)) => doc,
        _ => Json::object(),
    })
}

/// Refuses YAML that nests deeper than [`DEEPEST_NESTING`] or holds more than [`MOST_VALUES`]
/// values once its aliases are expanded, before it is loaded: the loader copies an alias's node
/// at each use, and everything after it walks the tree recursively. A syntax error is left for
/// the loader to report.
fn check_size(text: &str) -> Result<(), String> {
    use yaml_rust2::parser::{Event, Parser};

    /// A collection being read: its anchor, the values before it, the height of its tallest
    /// child.
    struct Open {
        anchor: usize,
        values_before: usize,
        tallest_child: usize,
    }
    let too_deep = || format!("the YAML nests deeper than {DEEPEST_NESTING} levels");
    // Each anchor's node: how many values it holds and how tall it is, aliases expanded.
    let mut anchors: std::collections::HashMap<usize, (usize, usize)> = Default::default();
    let mut open: Vec<Open> = Vec::new();
    let mut values = 0usize;
    let mut parser = Parser::new_from_str(text);
    loop {
        let Ok((event, _)) = parser.next_token() else {
            return Ok(());
        };
        // A node just read: its anchor, values and height.
        let node = match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push(Open {
                    anchor,
                    values_before: values,
                    tallest_child: 0,
                });
                values += 1;
                if open.len() > DEEPEST_NESTING {
                    return Err(too_deep());
                }
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop().map(|collection| {
                (
                    collection.anchor,
                    values - collection.values_before,
                    collection.tallest_child + 1,
                )
            }),
            Event::Scalar(_, _, anchor, _) => {
                values += 1;
                Some((anchor, 1, 0))
            }
            Event::Alias(anchor) => {
                let (more, height) = anchors.get(&anchor).copied().unwrap_or((1, 0));
                values = values.saturating_add(more);
                if open.len() + height > DEEPEST_NESTING {
                    return Err(too_deep());
                }
                Some((0, more, height))
            }
            _ => None,
        };
        if values > MOST_VALUES {
            return Err(format!(
                "the YAML holds more than {MOST_VALUES} values once its aliases are expanded"
            ));
        }
        if let Some((anchor, n_values, height)) = node {
            if anchor > 0 {
                anchors.insert(anchor, (n_values, height));
            }
            if let Some(parent) = open.last_mut() {
                parent.tallest_child = parent.tallest_child.max(height);
            }
        }
    }
}

fn io_message(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => error.to_string(),
    }
}

/// The manifest tree before symbols are resolved (`load_manifest_structure`): `inherit`ed
/// files merged under it, relative to the top manifest as af resolves them; the infra named by
/// the applications is returned for the client's default URL.
pub(crate) fn load_structure(
    file: &Path,
    top_file: &Path,
    cwd: &Path,
    home: &Path,
    infra: &mut Option<String>,
) -> CmdResult<Json> {
    let read = |file: &Path| std::fs::read_to_string(file);
    load_structure_with(file, top_file, cwd, home, infra, &read)
}

/// [`load_structure`], reading files with `read`.
pub(crate) fn load_structure_with(
    file: &Path,
    top_file: &Path,
    cwd: &Path,
    home: &Path,
    infra: &mut Option<String>,
    read: ReadFile<'_>,
) -> CmdResult<Json> {
    let mut loading = Loading {
        read,
        chain: Vec::new(),
        n_files: 0,
    };
    loading.load(file, top_file, cwd, home, infra)
}

/// The files being read for one manifest.
struct Loading<'r> {
    read: ReadFile<'r>,
    /// The file being read and those that inherit it, up to the top manifest: one inherited
    /// again is a cycle.
    chain: Vec<PathBuf>,
    /// Files read so far, towards [`MOST_MANIFEST_FILES`].
    n_files: usize,
}

impl Loading<'_> {
    fn load(
        &mut self,
        file: &Path,
        top_file: &Path,
        cwd: &Path,
        home: &Path,
        infra: &mut Option<String>,
    ) -> CmdResult<Json> {
        let file = expand_path(&file.to_string_lossy(), cwd, home);
        if self.chain.contains(&file) {
            return Err(Failure::message(format!(
                "Error: manifest inherits itself: {}",
                file.display()
            )));
        }
        self.n_files += 1;
        if self.n_files > MOST_MANIFEST_FILES {
            return Err(Failure::message(format!(
                "Error: manifest inherits more than {MOST_MANIFEST_FILES} files: {}",
                file.display()
            )));
        }
        self.chain.push(file.clone());
        let manifest = self.load_inherited(&file, top_file, cwd, home, infra);
        self.chain.pop();
        manifest
    }

    fn load_inherited(
        &mut self,
        file: &Path,
        top_file: &Path,
        cwd: &Path,
        home: &Path,
        infra: &mut Option<String>,
    ) -> CmdResult<Json> {
        let mut manifest = read_yaml(file, self.read)?;
        let parents: Vec<String> = match manifest.get("inherit") {
            Json::Array(items) => items.iter().map(Json::to_ruby_s).collect(),
            Json::Null => Vec::new(),
            other => vec![other.to_ruby_s()],
        };
        let top_dir = expand_path(&top_file.to_string_lossy(), cwd, home);
        for parent in parents {
            // af: File.expand_path("../" + path, manifest_file), always from the top manifest.
            let parent_file = expand_path(&format!("../{parent}"), &top_dir, home);
            let parent_tree = self.load(&parent_file, top_file, cwd, home, infra)?;
            manifest = deep_merge(parent_tree, manifest);
        }
        if let Some(apps) = manifest.get("applications").as_object().cloned() {
            for (key, app) in apps {
                if app.get("infra").truthy() {
                    *infra = Some(app.get("infra").to_ruby_s());
                }
                // af: File.expand_path(k, file): relative to the file's path itself, so only keys
                // that climb out of it (`../x`) ever match the working directory.
                let absolute = expand_path(&key, file, home);
                if cwd
                    .to_string_lossy()
                    .starts_with(&*absolute.to_string_lossy())
                {
                    manifest = deep_merge(manifest, app);
                }
            }
        }
        Ok(manifest)
    }
}

/// af's `merge_manifest(child, parent)`: `parent.merge(child)`, hashes merged deeply.
pub(crate) fn deep_merge(parent: Json, child: Json) -> Json {
    match (parent, child) {
        (Json::Object(mut base), Json::Object(over)) => {
            for (key, value) in over {
                match base.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, slot)) => {
                        let old = std::mem::take(slot);
                        *slot = if old.as_object().is_some() && value.as_object().is_some() {
                            deep_merge(old, value)
                        } else {
                            value
                        };
                    }
                    None => base.push((key, value)),
                }
            }
            Json::Object(base)
        }
        (_, child) => child,
    }
}

/// What symbol resolution needs from outside the manifest.
pub(crate) struct Symbols<'a> {
    /// `${target-url}` when the manifest has no `target`.
    pub(crate) target_url: &'a str,
    /// `api.<this>` is the `${target-base}` when the manifest has no `target` (the client's
    /// suggested URL base; computed beforehand, since it may need `GET /info/infras`).
    pub(crate) suggest_url: Option<&'a str>,
    /// af's `@application`, for `applications.<it>.<symbol>` lookups.
    pub(crate) application: Option<&'a str>,
}

/// Whether resolving `manifest` may need the client's suggested URL: some `${target-base}` and
/// no `target` anywhere to take it from.
pub(crate) fn needs_suggest_url(manifest: &Json) -> bool {
    fn any_string(value: &Json, needle: &str) -> bool {
        match value {
            Json::Str(s) => s.contains(needle),
            Json::Array(items) => items.iter().any(|v| any_string(v, needle)),
            Json::Object(pairs) => pairs.iter().any(|(_, v)| any_string(v, needle)),
            _ => false,
        }
    }
    fn any_key(value: &Json, key: &str) -> bool {
        match value {
            Json::Array(items) => items.iter().any(|v| any_key(v, key)),
            Json::Object(pairs) => pairs.iter().any(|(k, v)| k == key || any_key(v, key)),
            _ => false,
        }
    }
    any_string(manifest, "${target-base}") && !any_key(manifest, "target")
}

/// A path into the tree: hash keys, and array indices written as [`index_step`]s.
type TreePath = Vec<String>;

/// The step to element `index` of an array. A NUL cannot start a key af would look up (symbols
/// are `[[:alnum:]-]+`), so a step is never both.
fn index_step(index: usize) -> String {
    format!("\0{index}")
}

fn as_index(step: &str) -> Option<usize> {
    step.strip_prefix('\0')?.parse().ok()
}

fn node<'t>(root: &'t Json, path: &[String]) -> Option<&'t Json> {
    let mut current = root;
    for step in path {
        current = match (current, as_index(step)) {
            (Json::Array(items), Some(index)) => items.get(index)?,
            (Json::Object(_), None) => current.get(step),
            _ => return None,
        };
    }
    Some(current)
}

fn node_mut<'t>(root: &'t mut Json, path: &[String]) -> Option<&'t mut Json> {
    let mut current = root;
    for step in path {
        current = match (current, as_index(step)) {
            (Json::Array(items), Some(index)) => items.get_mut(index)?,
            (current @ Json::Object(_), None) => current.get_mut(step)?,
            _ => return None,
        };
    }
    Some(current)
}

/// af's `resolve_manifest`: every application, then the whole manifest, resolved in place.
pub(crate) fn resolve(manifest: &mut Json, symbols: &Symbols<'_>) -> CmdResult {
    let apps: Vec<String> = manifest
        .get("applications")
        .as_object()
        .map(|pairs| pairs.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut resolver = Resolver {
        symbols,
        active: Vec::new(),
        depth: 0,
    };
    for app in apps {
        let path = vec!["applications".to_owned(), app];
        resolver.resolve_node(manifest, &path, &[Vec::new()])?;
    }
    resolver.resolve_node(manifest, &[], &[Vec::new()])
}

/// Resolves the symbols in one string against `manifest` (af's `resolve_lexically(str)` with
/// the manifest as the only context).
pub(crate) fn resolve_string(
    manifest: &mut Json,
    text: &str,
    symbols: &Symbols<'_>,
) -> CmdResult<String> {
    let mut resolver = Resolver {
        symbols,
        active: Vec::new(),
        depth: 0,
    };
    resolver.resolve_text(manifest, text, &[Vec::new()])
}

struct Resolver<'a, 's> {
    symbols: &'a Symbols<'s>,
    /// Values being resolved now: a symbol that refers back to one of them, or to a hash or
    /// an array holding one, is a cycle.
    active: Vec<TreePath>,
    /// How many symbols deep the resolution is, towards [`DEEPEST_SYMBOLS`].
    depth: usize,
}

impl Resolver<'_, '_> {
    /// af's `resolve_lexically(val, ctx)`, on the node at `path`; `context` holds the paths of
    /// the enclosing hashes, innermost first.
    fn resolve_node(
        &mut self,
        root: &mut Json,
        path: &[String],
        context: &[TreePath],
    ) -> CmdResult {
        let Some(value) = node(root, path) else {
            return Ok(());
        };
        match value {
            Json::Object(pairs) => {
                let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
                let mut inner = vec![path.to_vec()];
                inner.extend_from_slice(context);
                for key in keys {
                    let mut child = path.to_vec();
                    child.push(key);
                    self.resolve_node(root, &child, &inner)?;
                }
            }
            Json::Array(items) => {
                // af resolves each element with the same context: a hash inside the array
                // finds symbols in the hashes around the array.
                for index in 0..items.len() {
                    let mut element = path.to_vec();
                    element.push(index_step(index));
                    self.resolve_node(root, &element, context)?;
                }
            }
            Json::Str(text) => {
                let text = text.clone();
                if !text.contains("${") {
                    return Ok(());
                }
                self.active.push(path.to_vec());
                let resolved = self.resolve_text(root, &text, context);
                self.active.pop();
                let resolved = resolved?;
                if let Some(slot) = node_mut(root, path) {
                    *slot = Json::Str(resolved);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `gsub(/\$\{([[:alnum:]\-]+)\}/) { resolve_symbol($1, ctx) }`.
    fn resolve_text(
        &mut self,
        root: &mut Json,
        text: &str,
        context: &[TreePath],
    ) -> CmdResult<String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let name_len = after
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '-'))
                .map_or(after.len(), |(i, _)| i);
            if name_len > 0 && after[name_len..].starts_with('}') {
                let symbol = &after[..name_len];
                out.push_str(&self.resolve_symbol(root, symbol, context)?);
                if out.len() > LONGEST_VALUE {
                    return Err(Failure::message(format!(
                        "Error: the symbols in the manifest make a value longer than \
                         {LONGEST_VALUE} bytes: {text:.40}…"
                    )));
                }
                rest = &after[name_len + 1..];
            } else {
                out.push_str("${");
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn resolve_symbol(
        &mut self,
        root: &mut Json,
        symbol: &str,
        context: &[TreePath],
    ) -> CmdResult<String> {
        match symbol {
            "target-base" => {
                let target = match self.find_symbol(root, "target", context) {
                    Some(path) => node(root, &path).map(Json::to_ruby_s).unwrap_or_default(),
                    None => format!("api.{}", self.symbols.suggest_url.unwrap_or("aws.af.cm")),
                };
                Ok(base_of(&target))
            }
            "target-url" => Ok(match self.find_symbol(root, "target", context) {
                Some(path) => node(root, &path).map(Json::to_ruby_s).unwrap_or_default(),
                None => self.symbols.target_url.to_owned(),
            }),
            "random-word" => Ok(random_word()),
            _ => {
                let Some(path) = self.find_symbol(root, symbol, context) else {
                    return Err(Failure::message(format!(
                        "Unknown symbol in manifest: {symbol}"
                    )));
                };
                if self.active.iter().any(|active| active.starts_with(&path)) {
                    return Err(Failure::message(format!(
                        "Error: the symbol ${{{symbol}}} in the manifest refers to itself"
                    )));
                }
                if self.depth >= DEEPEST_SYMBOLS {
                    return Err(Failure::message(format!(
                        "Error: the symbols in the manifest nest deeper than {DEEPEST_SYMBOLS} \
                         (at ${{{symbol}}})"
                    )));
                }
                // af resolves what it found in place, so later uses see the same value (one
                // `${random-word}`, not two).
                self.depth += 1;
                let resolved = self.resolve_node(root, &path, context);
                self.depth -= 1;
                resolved?;
                Ok(node(root, &path).map(Json::to_ruby_s).unwrap_or_default())
            }
        }
    }

    /// af's `find_symbol`: in each enclosing hash, `properties.<sym>`, then
    /// `applications.<@application>.<sym>`, then `<sym>`; the first truthy one.
    fn find_symbol(&self, root: &Json, symbol: &str, context: &[TreePath]) -> Option<TreePath> {
        for hash in context {
            let mut candidates = vec![
                [
                    hash.clone(),
                    vec!["properties".to_owned(), symbol.to_owned()],
                ]
                .concat(),
            ];
            if let Some(app) = self.symbols.application {
                candidates.push(
                    [
                        hash.clone(),
                        vec!["applications".to_owned(), app.to_owned(), symbol.to_owned()],
                    ]
                    .concat(),
                );
            }
            candidates.push([hash.clone(), vec![symbol.to_owned()]].concat());
            for candidate in candidates {
                if node(root, &candidate).is_some_and(Json::truthy) {
                    return Some(candidate);
                }
            }
        }
        None
    }
}

/// af's `Config.base_of`: the URL without its first label.
pub(crate) fn base_of(url: &str) -> String {
    match url.find('.') {
        Some(dot) if dot > 0 => url[dot + 1..].to_owned(),
        _ => url.to_owned(),
    }
}

/// af's `"%04x" % rand(0x0100000)`.
pub(crate) fn random_word() -> String {
    format!("{:04x}", rand::random_range(0..0x0100000u32))
}

/// af's `resolve_in(manifest, *where)` for the top level: `properties.…`, then
/// `applications.<app>.…`, then `…`.
pub(crate) fn lookup<'m>(manifest: &'m Json, application: Option<&str>, path: &[&str]) -> &'m Json {
    let find = |prefix: &[&str]| -> Option<&'m Json> {
        let mut current = manifest;
        for key in prefix.iter().chain(path) {
            current.as_object()?;
            current = current.get(key);
        }
        current.truthy().then_some(current)
    };
    static NULL: Json = Json::Null;
    find(&["properties"])
        .or_else(|| application.and_then(|app| find(&["applications", app])))
        .or_else(|| find(&[]))
        .unwrap_or(&NULL)
}

/// One application to work on, in af's `each_app` order.
#[derive(Clone, Debug)]
pub(crate) struct AppEntry {
    /// af's `@application`: the app's directory (or the path given).
    pub(crate) application: String,
    /// af's `@app_info`: its manifest entry (or the whole manifest).
    pub(crate) info: Option<Json>,
    /// `info["name"]`.
    pub(crate) name: Option<String>,
}

/// af's `each_app`: the applications of the manifest that `path` points into, or all of them
/// in dependency order when `path` is the manifest's directory; with no `applications`, the
/// manifest itself; with no manifest, nothing (or `Error: No applications.` when `panic`).
pub(crate) fn each_app(
    manifest: Option<&Json>,
    manifest_file: Option<&Path>,
    path: &str,
    cwd: &Path,
    home: &Path,
    panic: bool,
) -> CmdResult<Vec<AppEntry>> {
    let where_ = expand_path(path, cwd, home);
    let apps = manifest.and_then(|m| m.get("applications").as_object().cloned());
    match (apps, manifest_file) {
        (Some(all_apps), Some(file)) => {
            let file = expand_path(&file.to_string_lossy(), cwd, home);
            let app_dir = |key: &str| expand_path(&format!("../{key}"), &file, home);
            for (key, info) in &all_apps {
                let dir = app_dir(key);
                if where_
                    .to_string_lossy()
                    .starts_with(&*dir.to_string_lossy())
                {
                    return Ok(vec![entry(dir, info.clone())]);
                }
            }
            let manifest_dir = expand_path("..", &file, home);
            if where_ == manifest_dir {
                let ordered = ordered_by_deps(&all_apps, &file, home)?;
                Ok(ordered
                    .into_iter()
                    .map(|(key, info)| entry(app_dir(&key), info))
                    .collect())
            } else {
                Err(Failure::err(format!(
                    "Path '{path}' is not known to manifest '{}'.",
                    file.display()
                )))
            }
        }
        _ => match manifest {
            Some(manifest) => Ok(vec![AppEntry {
                application: path.to_owned(),
                info: Some(manifest.clone()),
                name: name_of(manifest),
            }]),
            None if panic => Err(Failure::err("No applications.")),
            None => Ok(Vec::new()),
        },
    }
}

fn entry(dir: PathBuf, info: Json) -> AppEntry {
    AppEntry {
        application: dir.to_string_lossy().into_owned(),
        name: name_of(&info),
        info: Some(info),
    }
}

fn name_of(info: &Json) -> Option<String> {
    let name = info.get("name");
    name.truthy().then(|| name.to_ruby_s())
}

/// af's `ordered_by_deps`: each app after the apps it `depends-on`; a cycle is an error.
fn ordered_by_deps(
    apps: &[(String, Json)],
    manifest_file: &Path,
    home: &Path,
) -> CmdResult<Vec<(String, Json)>> {
    let absolute = |key: &str| expand_path(&format!("../{key}"), manifest_file, home);
    let by_path: Vec<(PathBuf, String, Json)> = apps
        .iter()
        .map(|(k, v)| (absolute(k), k.clone(), v.clone()))
        .collect();
    let mut processed: Vec<PathBuf> = Vec::new();
    order(apps, &by_path, &mut processed, &absolute)
}

fn order(
    apps: &[(String, Json)],
    by_path: &[(PathBuf, String, Json)],
    processed: &mut Vec<PathBuf>,
    absolute: &dyn Fn(&str) -> PathBuf,
) -> CmdResult<Vec<(String, Json)>> {
    let mut ordered = Vec::new();
    for (key, info) in apps {
        let path = absolute(key);
        let deps: Vec<String> = match info.get("depends-on") {
            Json::Array(items) => items.iter().map(Json::to_ruby_s).collect(),
            Json::Null | Json::Bool(false) => Vec::new(),
            other => vec![other.to_ruby_s()],
        };
        if !deps.is_empty() {
            let mut dep_apps = Vec::new();
            for dep in deps {
                let dep_path = absolute(&dep);
                if processed.contains(&dep_path) {
                    return Err(Failure::err("Circular dependency detected."));
                }
                // af keys the dependency by the name it was given, with the entry found at its
                // path. When no application lives there, af crashes (`undefined method '[]'
                // for nil`); this is an error that says so.
                let Some(found) = by_path
                    .iter()
                    .find(|(p, _, _)| *p == dep_path)
                    .map(|(_, _, v)| v.clone())
                else {
                    return Err(Failure::message(format!(
                        "Error: {key} depends on {dep}, which is not an application of the manifest"
                    )));
                };
                dep_apps.push((dep, found));
            }
            processed.push(path);
            ordered.extend(order(&dep_apps, by_path, processed, absolute)?);
            ordered.push((key.clone(), info.clone()));
        } else if !processed.contains(&path) {
            ordered.push((key.clone(), info.clone()));
            processed.push(path);
        }
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Json {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
        yaml_to_json(&docs[0])
    }

    fn symbols() -> Symbols<'static> {
        Symbols {
            target_url: "http://localhost:9022",
            suggest_url: Some("aws.af.cm"),
            application: None,
        }
    }

    #[test]
    fn symbols_resolve_lexically() {
        let mut m = parse(
            "---\napplications:\n  .:\n    name: mapp\n    url: ${name}.${target-base}\n    mem: 64M\nproperties:\n  domain: example.com\nother: www.${domain}\n",
        );
        resolve(&mut m, &symbols()).unwrap();
        assert_eq!(
            m.get("applications").get(".").get("url").as_str(),
            Some("mapp.aws.af.cm")
        );
        assert_eq!(m.get("other").as_str(), Some("www.example.com"));
    }

    #[test]
    fn target_symbol_wins_and_unknown_fails() {
        let mut m = parse("target: api.example.com\nurl: x.${target-base}\nt: ${target-url}\n");
        resolve(&mut m, &symbols()).unwrap();
        assert_eq!(m.get("url").as_str(), Some("x.example.com"));
        assert_eq!(m.get("t").as_str(), Some("api.example.com"));
        let mut bad = parse("url: ${nope}\n");
        assert_eq!(
            resolve(&mut bad, &symbols()),
            Err(Failure::message("Unknown symbol in manifest: nope"))
        );
        let mut cycle = parse("a: ${b}\nb: ${a}\n");
        assert!(resolve(&mut cycle, &symbols()).is_err());
    }

    /// af resolves a hash inside a list with the list's context, so it finds the symbols of
    /// the hashes around the list (a scratch copy of the element used to lose them).
    #[test]
    fn hashes_inside_lists_see_the_symbols_around_the_list() {
        let mut m = parse(
            "properties:\n  db: mydb\napplications:\n  .:\n    name: web\n    services:\n      - label: ${db}-${name}\n        tier: ${plan}\n        tags: ['${name}', x]\n      - ${name}\n    plan: free\n",
        );
        resolve(&mut m, &symbols()).unwrap();
        let services = m
            .get("applications")
            .get(".")
            .get("services")
            .items()
            .to_vec();
        assert_eq!(services[0].get("label").as_str(), Some("mydb-web"));
        assert_eq!(services[0].get("tier").as_str(), Some("free"));
        assert_eq!(services[0].get("tags").items()[0].as_str(), Some("web"));
        assert_eq!(services[1].as_str(), Some("web"));
        // A symbol naming the list it sits in is still a cycle, not a stack overflow.
        let mut cycle = parse("a:\n  - x: ${a}\n");
        assert!(resolve(&mut cycle, &symbols()).is_err());
    }

    #[test]
    fn one_random_word_per_value() {
        let mut m = parse("name: app-${random-word}\nurl: ${name}.example.com\n");
        resolve(&mut m, &symbols()).unwrap();
        let name = m.get("name").as_str().unwrap().to_owned();
        assert_eq!(
            m.get("url").as_str().unwrap(),
            format!("{name}.example.com")
        );
        assert!(name.len() >= 8);
    }

    #[test]
    fn deep_merge_child_wins() {
        let parent = parse("a: 1\nb:\n  c: 2\n  d: 3\n");
        let child = parse("b:\n  c: 9\ne: 5\n");
        assert_eq!(
            deep_merge(parent, child).compact(),
            r#"{"a":1,"b":{"c":9,"d":3},"e":5}"#
        );
    }

    #[test]
    fn inherit_and_upward_search() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("base.yml"), "mem: 128M\ninstances: 2\n").unwrap();
        std::fs::write(root.join(MANIFEST), "inherit: base.yml\ninstances: 3\n").unwrap();
        std::fs::create_dir_all(root.join("app/sub")).unwrap();
        let found = find(None, &root.join("app/sub")).unwrap();
        assert_eq!(found, root.join(MANIFEST));
        let mut infra = None;
        let m = load_structure(&found, &found, root, root, &mut infra).unwrap();
        assert_eq!(m.get("mem").as_str(), Some("128M"));
        assert_eq!(m.get("instances"), &Json::Int(3));
    }

    #[test]
    fn each_app_orders_by_dependencies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let file = root.join(MANIFEST);
        let m = parse(
            "applications:\n  ./web:\n    name: web\n    depends-on: ./db\n  ./db:\n    name: db\n",
        );
        let all = each_app(Some(&m), Some(&file), ".", root, root, true).unwrap();
        let names: Vec<_> = all.iter().map(|e| e.name.clone().unwrap()).collect();
        assert_eq!(names, ["db", "web"]);
        let one = each_app(Some(&m), Some(&file), "web", root, root, true).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name.as_deref(), Some("web"));
        assert!(each_app(Some(&m), Some(&file), "/elsewhere", root, root, true).is_err());
        assert!(each_app(None, None, ".", root, root, true).is_err());
        assert!(
            each_app(None, None, ".", root, root, false)
                .unwrap()
                .is_empty()
        );
        let cyclic = parse(
            "applications:\n  ./a:\n    name: a\n    depends-on: ./b\n  ./b:\n    name: b\n    depends-on: ./a\n",
        );
        assert!(each_app(Some(&cyclic), Some(&file), ".", root, root, true).is_err());
        // A dependency on no application of the manifest (af crashes; the fuzzer found a
        // hash given as `depends-on`, which names none either) is an error, not a silent skip.
        for missing in [
            "applications:\n  ./web:\n    name: web\n    depends-on: ./nowhere\n",
            "applications:\n  ./web:\n    name: web\n    depends-on:\n      a: 43\n      b: zba\n",
        ] {
            let m = parse(missing);
            let error = each_app(Some(&m), Some(&file), ".", root, root, true).unwrap_err();
            assert!(
                format!("{error:?}").contains("which is not an application of the manifest"),
                "{missing}: {error:?}"
            );
        }
    }

    /// Loads `text` as `/m/manifest.yml`, every other file under `/m` having the same text.
    fn load_text(text: &str) -> CmdResult<Json> {
        let read = |path: &Path| {
            if path.starts_with("/m") {
                Ok(text.to_owned())
            } else {
                Err(std::io::ErrorKind::NotFound.into())
            }
        };
        let file = Path::new("/m").join(MANIFEST);
        load_structure_with(
            &file,
            &file,
            Path::new("/m"),
            Path::new("/h"),
            &mut None,
            &read,
        )
    }

    fn failure_text(result: CmdResult<impl std::fmt::Debug>) -> String {
        match result {
            Err(Failure::Message(text)) => text,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn an_inheritance_cycle_is_an_error_at_once() {
        // Each file inherits itself twice: 2^33 reads, unless the cycle is noticed.
        let text = failure_text(load_text("inherit: [manifest.yml, manifest.yml]\n"));
        assert_eq!(text, "Error: manifest inherits itself: /m/manifest.yml");
        let text = failure_text(load_text("inherit: [a.yml, b.yml]\n"));
        assert!(text.contains("inherits itself"), "{text}");
    }

    #[test]
    fn inheriting_many_files_is_an_error() {
        // 8 levels of 2 distinct parents each: 511 files, none of them a cycle.
        let read = |path: &Path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            Ok(if stem.len() < "manifest".len() + 8 {
                format!("inherit: [{stem}a.yml, {stem}b.yml]\n")
            } else {
                "mem: 64M\n".to_owned()
            })
        };
        let file = Path::new("/m").join(MANIFEST);
        let result = load_structure_with(
            &file,
            &file,
            Path::new("/m"),
            Path::new("/h"),
            &mut None,
            &read,
        );
        let text = failure_text(result);
        assert!(text.contains("inherits more than"), "{text}");
    }

    #[test]
    fn deep_yaml_nesting_is_an_error() {
        for text in [
            format!("a: {}{}\n", "[".repeat(200), "]".repeat(200)),
            format!("a:\n{}", "- ".repeat(100_000)),
        ] {
            let message = failure_text(load_text(&text));
            assert!(message.contains("nests deeper than"), "{message}");
        }
    }

    #[test]
    fn an_alias_bomb_is_an_error() {
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for n in 1..10 {
            let prior = format!("*a{}", n - 1);
            text += &format!("a{n}: &a{n} [{}]\n", vec![prior; 10].join(", "));
        }
        let message = failure_text(load_text(&text));
        assert!(message.contains("more than"), "{message}");
        // Aliases nest too: ten anchors of ten levels each are a hundred levels.
        let mut text = format!("b0: &b0 {}x{}\n", "[".repeat(10), "]".repeat(10));
        for n in 1..10 {
            text += &format!(
                "b{n}: &b{n} {}*b{}{}\n",
                "[".repeat(10),
                n - 1,
                "]".repeat(10)
            );
        }
        let message = failure_text(load_text(&text));
        assert!(message.contains("nests deeper than"), "{message}");
    }

    #[test]
    fn a_symbol_inside_the_hash_it_names_is_a_cycle() {
        for text in ["a:\n  x: ${a}\n", "a:\n- ${a}\n"] {
            let mut m = parse(text);
            assert_eq!(
                resolve(&mut m, &symbols()),
                Err(Failure::message(
                    "Error: the symbol ${a} in the manifest refers to itself"
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn a_long_chain_of_symbols_is_an_error() {
        let mut text = String::new();
        for n in 0..100_000 {
            text += &format!("s{n}: ${{s{}}}\n", n + 1);
        }
        text += "s100000: end\n";
        let mut m = parse(&text);
        let message = failure_text(resolve(&mut m, &symbols()));
        assert!(message.contains("nest deeper than 64"), "{message}");
    }

    #[test]
    fn symbols_that_expand_exponentially_are_an_error() {
        let mut text = "p0: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n".to_owned();
        for n in 1..10 {
            text += &format!("p{n}: {}\n", format!("${{p{}}}", n - 1).repeat(10));
        }
        let mut m = parse(&text);
        let message = failure_text(resolve(&mut m, &symbols()));
        assert!(message.contains("longer than"), "{message}");
    }
}
