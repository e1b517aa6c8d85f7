//! A Dockerfile reader: stages, ARG defaults, COPY/ADD sources and
//! `RUN --mount=type=bind` sources, enough to know which context paths a
//! build needs (so `.dockerignore` must not exclude them).
//!
//! It follows the Dockerfile frontend's lexical rules: parser directives
//! (`# syntax=`, `# escape=`) only at the very top, comments as whole lines,
//! line continuations with the escape character (comment lines inside a
//! continuation are dropped), case-insensitive keywords, and heredocs
//! (`RUN <<EOF` ... `EOF`) whose bodies are not instructions.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};


/// A parsed Dockerfile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dockerfile {
    /// Parser directives, key lowercased: `[("syntax", "docker/dockerfile:1")]`.
    pub directives: Vec<(String, String)>,
    /// ARGs before the first FROM (usable in FROM lines, and in a stage that
    /// redeclares them with a bare `ARG NAME`).
    pub global_args: Vec<Arg>,
    pub stages: Vec<Stage>,
}

/// `ARG NAME` or `ARG NAME=default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub default: Option<String>,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// 0-based position, what `--from=0` refers to.
    pub index: usize,
    /// The `AS` name, lowercased as BuildKit does.
    pub name: Option<String>,
    /// The image as written (`${PYTHON_IMAGE}`); see [`Dockerfile::base_image`].
    pub base: String,
    pub platform: Option<String>,
    /// Line of the FROM (1-based).
    pub line: usize,
    /// ARGs declared in this stage, in order.
    pub args: Vec<Arg>,
    /// Every instruction of the stage after FROM, in order.
    pub instructions: Vec<Instruction>,
    pub copies: Vec<Copy>,
    pub bind_mounts: Vec<BindMount>,
}

/// A logical instruction (continuations joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Line where it starts (1-based).
    pub line: usize,
    /// Uppercased keyword: `RUN`, `COPY`, ...
    pub keyword: String,
    /// Everything after the keyword, continuations joined with a space.
    pub arguments: String,
    /// Heredoc bodies that followed the line, in order.
    pub heredocs: Vec<String>,
}

/// A COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub line: usize,
    /// `COPY` or `ADD`.
    pub keyword: String,
    /// `--from=` value as written: a stage name, a stage index or an image.
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// Every `--flag[=value]` as written, including the ones above.
    pub flags: Vec<(String, Option<String>)>,
    /// Sources as written (JSON form unquoted); heredoc sources are `<<EOF`.
    pub sources: Vec<String>,
    pub destination: String,
}

/// A `RUN --mount=type=bind` (the default mount type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub line: usize,
    /// `source=`/`src=`, default `.` (the whole context or stage).
    pub source: String,
    pub target: Option<String>,
    /// `from=`: a stage or image; `None` means the build context.
    pub from: Option<String>,
}

impl Dockerfile {
    /// Parses Dockerfile text; errors name the line.
    pub fn parse(text: &str) -> Result<Dockerfile> {
        let mut dockerfile = Dockerfile::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut escape = '\\';
        let mut at = 0;

        // Parser directives: `# key=value` lines at the very top only.
        while let Some(line) = lines.get(at) {
            let Some((key, value)) = parse_directive(line) else { break };
            if key == "escape" {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    other => bail!("line {}: escape directive must be \\ or `, not {other:?}", at + 1),
                };
            }
            dockerfile.directives.push((key, value));
            at += 1;
        }

        while at < lines.len() {
            let start = at;
            let (logical, next) = join_continuation(&lines, at, escape);
            at = next;
            let trimmed = logical.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, arguments) = match trimmed.split_once(char::is_whitespace) {
                Some((k, rest)) => (k.to_ascii_uppercase(), rest.trim().to_string()),
                None => (trimmed.to_ascii_uppercase(), String::new()),
            };
            let mut heredocs = Vec::new();
            if matches!(keyword.as_str(), "RUN" | "COPY" | "ADD") {
                for (word, strip_tabs) in heredoc_markers(&arguments) {
                    let (body, next) = read_heredoc(&lines, at, &word, strip_tabs)
                        .with_context(|| format!("line {}: heredoc <<{word} is never closed", start + 1))?;
                    heredocs.push(body);
                    at = next;
                }
            }
            let instruction = Instruction { line: start + 1, keyword, arguments, heredocs };
            dockerfile.add(instruction).with_context(|| format!("Dockerfile line {}", start + 1))?;
        }
        Ok(dockerfile)
    }

    /// Reads and parses a Dockerfile from disk.
    pub fn from_file(path: &std::path::Path) -> Result<Dockerfile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Dockerfile::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    fn add(&mut self, instruction: Instruction) -> Result<()> {
        match instruction.keyword.as_str() {
            "FROM" => {
                let stage = parse_from(&instruction, self.stages.len())?;
                self.stages.push(stage);
            }
            "ARG" => {
                let args = parse_args(&instruction.arguments)?;
                match self.stages.last_mut() {
                    Some(stage) => stage.args.extend(args.clone()),
                    None => self.global_args.extend(args.clone()),
                }
            }
            _ => {}
        }
        let Some(stage) = self.stages.last_mut() else {
            if instruction.keyword != "ARG" {
                bail!("{} before the first FROM (only ARG may come first)", instruction.keyword);
            }
            return Ok(());
        };
        match instruction.keyword.as_str() {
            "COPY" | "ADD" => stage.copies.push(parse_copy(&instruction)?),
            "RUN" => stage.bind_mounts.extend(parse_bind_mounts(&instruction)?),
            _ => {}
        }
        if instruction.keyword != "FROM" {
            stage.instructions.push(instruction);
        }
        Ok(())
    }

    /// A stage by `--from` reference: its name (case-insensitive) or index.
    pub fn stage(&self, reference: &str) -> Option<&Stage> {
        let lower = reference.to_ascii_lowercase();
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| reference.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }

    /// Global ARG defaults overridden by `build_args` (`--build-arg K=V`).
    pub fn global_values(&self, build_args: &[(String, String)]) -> HashMap<String, String> {
        let mut values = HashMap::new();
        for arg in &self.global_args {
            let value = override_or_default(arg, build_args);
            if let Some(value) = value {
                let expanded = expand(&value, &values);
                values.insert(arg.name.clone(), expanded);
            }
        }
        values
    }

    /// The ARG values visible at the end of a stage: its own ARGs, with a bare
    /// `ARG NAME` inheriting the global value, overridden by `build_args`.
    pub fn stage_values(&self, stage: &Stage, build_args: &[(String, String)]) -> HashMap<String, String> {
        let globals = self.global_values(build_args);
        let mut values = HashMap::new();
        for arg in &stage.args {
            let value = build_args
                .iter()
                .rev()
                .find(|(k, _)| *k == arg.name)
                .map(|(_, v)| v.clone())
                .or_else(|| arg.default.as_ref().map(|d| expand(d, &values)))
                .or_else(|| globals.get(&arg.name).cloned());
            if let Some(value) = value {
                values.insert(arg.name.clone(), value);
            }
        }
        values
    }

    /// A stage's base image with global ARGs substituted.
    pub fn base_image(&self, stage: &Stage, build_args: &[(String, String)]) -> String {
        expand(&stage.base, &self.global_values(build_args))
    }
}

fn override_or_default(arg: &Arg, build_args: &[(String, String)]) -> Option<String> {
    build_args.iter().rev().find(|(k, _)| *k == arg.name).map(|(_, v)| v.clone()).or_else(|| arg.default.clone())
}

/// `# syntax=docker/dockerfile:1` -> ("syntax", "docker/dockerfile:1").
fn parse_directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (key, value) = body.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let key = key.to_ascii_lowercase();
    // Unknown keys are comments, which end the directive block.
    matches!(key.as_str(), "syntax" | "escape" | "check").then(|| (key, value.trim().to_string()))
}

/// Joins a logical line starting at `at`; returns it and the next line index.
/// Comment lines inside a continuation are dropped, as BuildKit does.
fn join_continuation(lines: &[&str], mut at: usize, escape: char) -> (String, usize) {
    let mut joined = String::new();
    loop {
        let line = lines[at];
        at += 1;
        let trimmed_end = line.trim_end();
        let continues = trimmed_end.ends_with(escape) && !trimmed_end.trim_start().starts_with('#');
        if continues {
            joined.push_str(&trimmed_end[..trimmed_end.len() - escape.len_utf8()]);
            joined.push(' ');
        } else {
            joined.push_str(line);
        }
        if !continues || at >= lines.len() {
            return (joined, at);
        }
        // Skip comment lines (and blank ones) inside the continuation.
        while at < lines.len() && (lines[at].trim_start().starts_with('#') || lines[at].trim().is_empty()) {
            at += 1;
        }
        if at >= lines.len() {
            return (joined, at);
        }
    }
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"` markers in a RUN/COPY/ADD line:
/// (word, strip leading tabs).
fn heredoc_markers(arguments: &str) -> Vec<(String, bool)> {
    let mut markers = Vec::new();
    let mut rest = arguments;
    while let Some(at) = rest.find("<<") {
        rest = &rest[at + 2..];
        let strip_tabs = rest.starts_with('-');
        let word_start = rest.trim_start_matches('-');
        let unquoted = word_start.trim_start_matches(['"', '\'']);
        let word: String = unquoted.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !word.is_empty() {
            markers.push((word, strip_tabs));
        }
    }
    markers
}

fn read_heredoc(lines: &[&str], mut at: usize, word: &str, strip_tabs: bool) -> Option<(String, usize)> {
    let mut body = String::new();
    while let Some(line) = lines.get(at) {
        at += 1;
        let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
        if line == word {
            return Some((body, at));
        }
        body.push_str(line);
        body.push('\n');
    }
    None
}

/// `FROM [--platform=p] image [AS name]`.
fn parse_from(instruction: &Instruction, index: usize) -> Result<Stage> {
    let (flags, words) = split_flags(&instruction.arguments);
    let platform = flags.iter().find(|(k, _)| k == "platform").and_then(|(_, v)| v.clone());
    let (base, name) = match words.as_slice() {
        [image] => (image.clone(), None),
        [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            (image.clone(), Some(name.to_ascii_lowercase()))
        }
        _ => bail!("FROM should be `FROM image [AS name]`, got {:?}", instruction.arguments),
    };
    Ok(Stage {
        index,
        name,
        base,
        platform,
        line: instruction.line,
        args: Vec::new(),
        instructions: Vec::new(),
        copies: Vec::new(),
        bind_mounts: Vec::new(),
    })
}

/// `ARG A`, `ARG A=1`, `ARG A="x y" B=2`.
fn parse_args(arguments: &str) -> Result<Vec<Arg>> {
    let words = shell_words(arguments);
    if words.is_empty() {
        bail!("ARG needs a name");
    }
    Ok(words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some((name, value)) => Arg { name: name.to_string(), default: Some(value.to_string()) },
            None => Arg { name: word, default: None },
        })
        .collect())
}

/// COPY/ADD: leading `--flags`, then sources and destination, whitespace
/// separated or as a JSON array.
fn parse_copy(instruction: &Instruction) -> Result<Copy> {
    let (flags, rest) = split_leading_flags(&instruction.arguments);
    let words: Vec<String> = if rest.trim_start().starts_with('[') {
        serde_json::from_str(rest.trim())
            .with_context(|| format!("{} JSON form is not an array of strings: {rest}", instruction.keyword))?
    } else {
        rest.split_whitespace().map(str::to_string).collect()
    };
    let Some((destination, sources)) = words.split_last() else {
        bail!("{} needs a source and a destination", instruction.keyword);
    };
    if sources.is_empty() {
        bail!("{} needs a source and a destination", instruction.keyword);
    }
    let value = |name: &str| flags.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone());
    Ok(Copy {
        line: instruction.line,
        keyword: instruction.keyword.clone(),
        from: value("from"),
        chown: value("chown"),
        chmod: value("chmod"),
        link: flags.iter().any(|(k, v)| k == "link" && v.as_deref() != Some("false")),
        flags: flags.clone(),
        sources: sources.to_vec(),
        destination: destination.clone(),
    })
}

/// The bind mounts of a RUN (`--mount=type=bind,...`; bind is the default).
fn parse_bind_mounts(instruction: &Instruction) -> Result<Vec<BindMount>> {
    let (flags, _) = split_leading_flags(&instruction.arguments);
    let mut mounts = Vec::new();
    for (_, spec) in flags.iter().filter(|(k, _)| k == "mount") {
        let spec = spec.as_deref().unwrap_or("");
        let mut fields: HashMap<String, String> = HashMap::new();
        for field in split_csv(spec) {
            let (key, value) = field.split_once('=').unwrap_or((field.as_str(), "true"));
            fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
        }
        if fields.get("type").map_or("bind", String::as_str) != "bind" {
            continue;
        }
        let source = fields.get("source").or_else(|| fields.get("src")).cloned().unwrap_or_else(|| ".".to_string());
        let target = fields.get("target").or_else(|| fields.get("dst")).or_else(|| fields.get("destination")).cloned();
        mounts.push(BindMount { line: instruction.line, source, target, from: fields.get("from").cloned() });
    }
    Ok(mounts)
}

/// `a,"b,c",d` -> [a, b,c, d]: BuildKit reads mount specs as CSV.
fn split_csv(spec: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in spec.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields.into_iter().filter(|f| !f.is_empty()).collect()
}

/// Leading `--name[=value]` words, then the rest of the text untouched.
fn split_leading_flags(arguments: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    let mut rest = arguments.trim_start();
    while let Some(body) = rest.strip_prefix("--") {
        let end = body.find(char::is_whitespace).unwrap_or(body.len());
        let word = &body[..end];
        flags.push(match word.split_once('=') {
            Some((name, value)) => (name.to_ascii_lowercase(), Some(value.to_string())),
            None => (word.to_ascii_lowercase(), None),
        });
        rest = body[end..].trim_start();
    }
    (flags, rest)
}

fn split_flags(arguments: &str) -> (Vec<(String, Option<String>)>, Vec<String>) {
    let (flags, rest) = split_leading_flags(arguments);
    (flags, rest.split_whitespace().map(str::to_string).collect())
}

/// Whitespace-separated words with `"..."`/`'...'` quoting and `\` escapes
/// (for ARG values).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// Substitutes `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}`;
/// `\$` stays a literal `$`. Unknown names become empty, as in Docker.
pub fn expand(text: &str, values: &HashMap<String, String>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if chars.get(i + 1) == Some(&'$') => {
                out.push('$');
                i += 2;
            }
            '$' if chars.get(i + 1) == Some(&'{') => {
                let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
                    out.extend(&chars[i..]);
                    break;
                };
                let inner: String = chars[i + 2..i + 2 + close].iter().collect();
                out.push_str(&expand_braced(&inner, values));
                i += close + 3;
            }
            '$' if chars.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic() || *c == '_') => {
                let name: String =
                    chars[i + 1..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == '_').collect();
                out.push_str(values.get(&name).map_or("", String::as_str));
                i += 1 + name.chars().count();
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn expand_braced(inner: &str, values: &HashMap<String, String>) -> String {
    if let Some((name, default)) = inner.split_once(":-") {
        return match values.get(name).filter(|v| !v.is_empty()) {
            Some(value) => value.clone(),
            None => expand(default, values),
        };
    }
    if let Some((name, alternative)) = inner.split_once(":+") {
        return match values.get(name).filter(|v| !v.is_empty()) {
            Some(_) => expand(alternative, values),
            None => String::new(),
        };
    }
    values.get(inner).cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like docker/CPUDockerfile.multistage, with extra syntax to parse.
    const PROJECT: &str = r#"# syntax=docker/dockerfile:1
# escape=\

# A comment after the directives: any `# key=value` below is just a comment.
# escape=`
ARG NODE_IMAGE=node:18-alpine
ARG PYTHON_IMAGE="python:3.10-slim-bookworm"
ARG APP_DIR=iopaint

FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS Frontend-Builder
WORKDIR /build/web_app
COPY web_app/package.json web_app/package-lock.json ./
RUN --mount=type=cache,id=npm,target=/root/.npm \
    # comments inside a continuation are dropped
    --mount=type=secret,id=ca_bundle \
    npm ci
COPY ./web_app/ ./
RUN npm run build

FROM ${PYTHON_IMAGE} as python-builder
ARG APP_DIR
ARG EXTRA=docs
COPY ["${APP_DIR}/pyproject.toml", "/build/${APP_DIR}/pyproject.toml"]
RUN <<EOF
COPY this-is-heredoc-text-not-an-instruction /x
pip install /build/iopaint
EOF
copy --chown=1000:1000 --chmod=0644 --link $EXTRA/notes.md /docs/

FROM ${PYTHON_IMAGE}
COPY --from=python-builder /opt/venv /opt/venv
COPY --from=0 /build/web_app/dist /app/web
COPY --from=busybox:1.36 /bin/busybox /bin/
ADD https://example.com/model.pt /app/models/
COPY <<-EOT /app/VERSION
	0.1.0
	EOT
RUN --mount=type=bind,source=iopaint,target=/tmp/src,rw \
    --mount=type=bind,from=frontend-builder,source=/build/web_app/dist,target=/tmp/src/web_app \
    --mount=type=bind,target=/ctx \
    pip install --no-deps /tmp/src
ADD README.md /app/
"#;

    fn project() -> Dockerfile {
        Dockerfile::parse(PROJECT).expect("project Dockerfile parses")
    }

    #[test]
    fn directives_stop_at_the_first_other_line() {
        let df = project();
        assert_eq!(
            df.directives,
            [("syntax".to_string(), "docker/dockerfile:1".to_string()), ("escape".to_string(), "\\".to_string())]
        );
    }

    #[test]
    fn stages_and_args() {
        let df = project();
        let names: Vec<Option<&str>> = df.stages.iter().map(|s| s.name.as_deref()).collect();
        assert_eq!(names, [Some("frontend-builder"), Some("python-builder"), None]);
        assert_eq!(df.stages[0].platform.as_deref(), Some("$BUILDPLATFORM"));
        assert_eq!(df.stages[0].line, 10);
        assert_eq!(df.base_image(&df.stages[0], &[]), "node:18-alpine");
        assert_eq!(df.base_image(&df.stages[1], &[]), "python:3.10-slim-bookworm");
        let standin = [("PYTHON_IMAGE".to_string(), "iopaint-standin/python:3.11".to_string())];
        assert_eq!(df.base_image(&df.stages[2], &standin), "iopaint-standin/python:3.11");
        assert_eq!(df.global_args.len(), 3);
        let values = df.stage_values(&df.stages[1], &[]);
        assert_eq!(values.get("APP_DIR").map(String::as_str), Some("iopaint")); // inherited global
        assert_eq!(values.get("EXTRA").map(String::as_str), Some("docs"));
        assert!(df.stage_values(&df.stages[2], &[]).is_empty()); // globals need redeclaring
        assert_eq!(df.stage("python-builder").map(|s| s.index), Some(1));
        assert_eq!(df.stage("PYTHON-BUILDER").map(|s| s.index), Some(1));
    }

    #[test]
    fn continuations_and_heredocs() {
        let df = project();
        let npm = &df.stages[0].instructions[2];
        assert_eq!(npm.keyword, "RUN");
        assert_eq!(npm.line, 13);
        assert!(npm.arguments.ends_with("npm ci"), "{}", npm.arguments);
        assert!(!npm.arguments.contains("comments inside"));
        let heredoc = &df.stages[1].instructions[3];
        assert_eq!(heredoc.heredocs, ["COPY this-is-heredoc-text-not-an-instruction /x\npip install /build/iopaint\n"]);
        let version = df.stages[2].copies.iter().find(|c| c.sources == ["<<-EOT"]).unwrap();
        assert_eq!(version.destination, "/app/VERSION");
        // The heredoc body did not become a COPY.
        assert_eq!(df.stages[1].copies.len(), 2);
    }

    #[test]
    fn copy_flags_and_forms() {
        let df = project();
        let pyproject = &df.stages[1].copies[0];
        assert_eq!(pyproject.sources, ["${APP_DIR}/pyproject.toml"]);
        assert_eq!(pyproject.destination, "/build/${APP_DIR}/pyproject.toml");
        let notes = &df.stages[1].copies[1];
        assert_eq!(notes.keyword, "COPY");
        assert_eq!(notes.chown.as_deref(), Some("1000:1000"));
        assert_eq!(notes.chmod.as_deref(), Some("0644"));
        assert!(notes.link);
        let froms: Vec<Option<&str>> = df.stages[2].copies.iter().map(|c| c.from.as_deref()).collect();
        assert_eq!(froms, [Some("python-builder"), Some("0"), Some("busybox:1.36"), None, None, None]);
        let mounts = &df.stages[2].bind_mounts;
        assert_eq!(mounts.len(), 3);
        assert_eq!((mounts[0].source.as_str(), mounts[0].from.as_deref()), ("iopaint", None));
        assert_eq!(mounts[1].from.as_deref(), Some("frontend-builder"));
        assert_eq!((mounts[2].source.as_str(), mounts[2].target.as_deref()), (".", Some("/ctx")));
    }

    #[test]
    fn recorded_fixture_dockerfile() {
        let df = Dockerfile::parse(include_str!("testdata/buildkit/multistage.Dockerfile")).unwrap();
        assert_eq!(df.stages.len(), 3);
        let runtime = df.stage("runtime").unwrap();
        assert_eq!(runtime.copies.iter().filter(|c| c.from.is_some()).count(), 2);
    }

    #[test]
    fn backtick_escape_directive() {
        let df = Dockerfile::parse("# escape=`\nFROM scratch\nCOPY a `\n  b /dst/\n").unwrap();
        assert_eq!(df.stages[0].copies[0].sources, ["a", "b"]);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("RUN echo before from\n", "line 1"),
            ("FROM a b c d\n", "line 1"),
            ("FROM scratch\nCOPY onlyone\n", "line 2"),
            ("FROM scratch\nCOPY [\"a\", \n", "line 2"),
            ("FROM scratch\nRUN <<EOF\necho\n", "never closed"),
            ("# escape=x\nFROM scratch\n", "escape directive"),
        ];
        for (text, wanted) in cases {
            let err = format!("{:#}", Dockerfile::parse(text).unwrap_err());
            assert!(err.contains(wanted), "{text:?}: {err}");
        }
    }

    #[test]
    fn variable_expansion() {
        let values: HashMap<String, String> =
            [("A".to_string(), "x".to_string()), ("EMPTY".to_string(), String::new())].into_iter().collect();
        assert_eq!(expand("$A/${A}/${B:-def}/${A:+alt}/${EMPTY:-e}/$B/\\$A", &values), "x/x/def/alt/e//$A");
        assert_eq!(expand("${unclosed", &values), "${unclosed");
        assert_eq!(shell_words(r#"A="x y" B='z' C=\"q"#), ["A=x y", "B=z", "C=\"q"]);
        assert_eq!(split_csv(r#"type=bind,"source=a,b",target=/t"#), ["type=bind", "source=a,b", "target=/t"]);
    }
}
