//! The Dockerfile front: `parse-dockerfile` reads the grammar (directives, continuation lines,
//! heredocs, JSON and shell forms, flags); this module turns its borrowed tree into the owned
//! steps the executor runs, each with its line number and the text `Step N/M` shows.

use parse_dockerfile::{Command, Flag, HealthcheckArguments, Instruction, JsonOrStringArray, Source};

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The escape character (`# escape=` directive).
    pub escape: char,
    /// `ARG`s before the first `FROM` (their raw text).
    pub global_args: Vec<String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and what follows it.
#[derive(Debug, Clone)]
pub struct Stage {
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The base image as written (substituted with the global args at build time).
    pub base: String,
    /// `--platform`.
    pub platform: Option<String>,
    /// The `FROM` line.
    pub line: usize,
    /// The `FROM` instruction's text.
    pub text: String,
    /// The instructions after `FROM`.
    pub steps: Vec<Step>,
}

/// One instruction.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line of its keyword.
    pub line: usize,
    /// Its text, continuation lines joined (what `Step N/M :` prints).
    pub text: String,
    /// What it does.
    pub kind: StepKind,
}

/// A command in exec or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// `["a", "b"]`.
    Exec(Vec<String>),
    /// Run through the stage's `SHELL`.
    Shell(String),
}

/// A source of `COPY`/`ADD`.
#[derive(Debug, Clone)]
pub enum CopySource {
    /// A path (or, for `ADD`, a URL) as written.
    Path(String),
    /// A here-document's content (`expand`: substitute variables in it).
    HereDoc { content: String, expand: bool },
}

/// What an instruction does.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// `RUN [--mount…] [--network…] cmd`; here-documents are the files its shell reads.
    Run { cmd: Cmd, flags: Vec<(String, Option<String>)>, here_docs: Vec<(String, bool)> },
    /// `COPY` (`add`: false) or `ADD`.
    Copy { add: bool, flags: Vec<(String, Option<String>)>, sources: Vec<CopySource>, dest: String },
    /// `ENV` (raw pairs).
    Env(String),
    /// `LABEL` (raw pairs).
    Label(String),
    /// `ARG name[=default]` (raw).
    Arg(String),
    /// `EXPOSE` (raw words).
    Expose(Vec<String>),
    /// `CMD`.
    Cmd(Cmd),
    /// `ENTRYPOINT`.
    Entrypoint(Cmd),
    /// `VOLUME` paths (raw).
    Volume(Vec<String>),
    /// `USER` (raw).
    User(String),
    /// `WORKDIR` (raw).
    Workdir(String),
    /// `STOPSIGNAL` (raw).
    Stopsignal(String),
    /// `HEALTHCHECK [options] CMD …` (`None`: `HEALTHCHECK NONE`).
    Healthcheck { flags: Vec<(String, Option<String>)>, cmd: Option<Cmd> },
    /// `SHELL ["exe", "arg"]`.
    Shell(Vec<String>),
    /// `ONBUILD <instruction>` (its text, stored in the image for later builds).
    Onbuild(String),
    /// `MAINTAINER` (the image's author).
    Maintainer(String),
}

/// A parse failure, with the line it is on (Docker: `dockerfile parse error line N: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dockerfile parse error line {}: {}", self.line, self.message)
    }
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError { line: 1, message: "the Dockerfile is empty".into() });
    }
    let parsed = parse_dockerfile::parse(text).map_err(|e| ParseError {
        line: e.line(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    })?;
    let escape = parsed.parser_directives.escape.as_ref().map_or('\\', |d| d.value.value);
    let starts: Vec<usize> = parsed.instructions.iter().map(start_of).collect();
    let text_of = |i: usize| -> String {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        instruction_text(&text[starts[i]..end], escape)
    };
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (i, inst) in parsed.instructions.iter().enumerate() {
        let line = line_of(starts[i]);
        let step_text = text_of(i);
        if let Instruction::From(from) = inst {
            let mut platform = None;
            for f in &from.options {
                match f.name.value.as_ref() {
                    "platform" => platform = f.value.as_ref().map(|v| v.value.to_string()),
                    other => return Err(ParseError { line, message: format!("unknown flag: --{other}") }),
                }
            }
            stages.push(Stage {
                name: from.as_.as_ref().map(|(_, n)| n.value.to_ascii_lowercase()),
                base: from.image.value.to_string(),
                platform,
                line,
                text: step_text,
                steps: Vec::new(),
            });
            continue;
        }
        let kind = match step_kind(inst).map_err(|message| ParseError { line, message })? {
            StepKind::Onbuild(_) => StepKind::Onbuild(
                step_text.split_once(char::is_whitespace).map(|(_, r)| r.trim().to_string()).unwrap_or_default(),
            ),
            k => k,
        };
        match stages.last_mut() {
            Some(stage) => stage.steps.push(Step { line, text: step_text, kind }),
            None => match kind {
                StepKind::Arg(a) => global_args.push(a),
                _ => {
                    return Err(ParseError {
                        line,
                        message: "no build stage in current context: the first instruction must be FROM (or ARG)"
                            .into(),
                    })
                }
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError {
            line: 1,
            message: "no build stage in current context: the Dockerfile has no FROM".into(),
        });
    }
    Ok(Dockerfile { escape, global_args, stages })
}

/// Parses one instruction on its own (an `ONBUILD` trigger stored in an image).
pub fn parse_trigger(text: &str) -> Result<Step, ParseError> {
    let wrapped = format!("FROM scratch\n{text}\n");
    let df = parse(&wrapped)?;
    df.stages
        .into_iter()
        .next()
        .and_then(|s| s.steps.into_iter().next())
        .ok_or(ParseError { line: 1, message: format!("invalid ONBUILD trigger: {text}") })
}

fn flags(options: &[Flag<'_>]) -> Vec<(String, Option<String>)> {
    options.iter().map(|f| (f.name.value.to_string(), f.value.as_ref().map(|v| v.value.to_string()))).collect()
}

fn command(c: &Command<'_>) -> Result<Cmd, String> {
    Ok(match c {
        Command::Exec(args) => Cmd::Exec(args.value.iter().map(|a| a.value.to_string()).collect()),
        Command::Shell(s) => Cmd::Shell(s.value.to_string()),
        _ => return Err("unsupported command form".into()),
    })
}

fn step_kind(inst: &Instruction<'_>) -> Result<StepKind, String> {
    Ok(match inst {
        Instruction::Run(r) => StepKind::Run {
            cmd: command(&r.arguments)?,
            flags: flags(&r.options),
            here_docs: r.here_docs.iter().map(|h| (h.value.to_string(), h.expand)).collect(),
        },
        Instruction::Copy(c) => StepKind::Copy {
            add: false,
            flags: flags(&c.options),
            sources: c.src.iter().map(source).collect(),
            dest: c.dest.value.to_string(),
        },
        Instruction::Add(a) => StepKind::Copy {
            add: true,
            flags: flags(&a.options),
            sources: a.src.iter().map(source).collect(),
            dest: a.dest.value.to_string(),
        },
        Instruction::Env(e) => StepKind::Env(e.arguments.value.to_string()),
        Instruction::Label(l) => StepKind::Label(l.arguments.value.to_string()),
        Instruction::Arg(a) => StepKind::Arg(a.arguments.value.to_string()),
        Instruction::Expose(e) => StepKind::Expose(e.arguments.iter().map(|p| p.value.to_string()).collect()),
        Instruction::Cmd(c) => StepKind::Cmd(command(&c.arguments)?),
        Instruction::Entrypoint(e) => StepKind::Entrypoint(command(&e.arguments)?),
        Instruction::Volume(v) => StepKind::Volume(match &v.arguments {
            JsonOrStringArray::Json(a) => a.value.iter().map(|s| s.value.to_string()).collect(),
            JsonOrStringArray::String(a) => a.iter().map(|s| s.value.to_string()).collect(),
        }),
        Instruction::User(u) => StepKind::User(u.arguments.value.to_string()),
        Instruction::Workdir(w) => StepKind::Workdir(w.arguments.value.to_string()),
        Instruction::Stopsignal(s) => StepKind::Stopsignal(s.arguments.value.to_string()),
        Instruction::Healthcheck(h) => StepKind::Healthcheck {
            flags: flags(&h.options),
            cmd: match &h.arguments {
                HealthcheckArguments::Cmd { arguments, .. } => Some(command(arguments)?),
                HealthcheckArguments::None { .. } => None,
                _ => return Err("unsupported HEALTHCHECK form".into()),
            },
        },
        Instruction::Shell(s) => StepKind::Shell(s.arguments.iter().map(|a| a.value.to_string()).collect()),
        Instruction::Onbuild(o) => {
            let inner = &o.instruction;
            if matches!(**inner, Instruction::From(_) | Instruction::Maintainer(_) | Instruction::Onbuild(_)) {
                return Err("ONBUILD may not be used with FROM, MAINTAINER or ONBUILD".into());
            }
            StepKind::Onbuild(String::new())
        }
        Instruction::Maintainer(m) => StepKind::Maintainer(m.name.value.to_string()),
        Instruction::From(_) => return Err("unexpected FROM".into()),
        _ => return Err("unknown instruction".into()),
    })
}

fn source(s: &Source<'_>) -> CopySource {
    match s {
        Source::Path(p) => CopySource::Path(p.value.to_string()),
        Source::HereDoc(h) => CopySource::HereDoc { content: h.value.to_string(), expand: h.expand },
        _ => CopySource::Path(String::new()),
    }
}

fn start_of(inst: &Instruction<'_>) -> usize {
    match inst {
        Instruction::Add(i) => i.add.span.start,
        Instruction::Arg(i) => i.arg.span.start,
        Instruction::Cmd(i) => i.cmd.span.start,
        Instruction::Copy(i) => i.copy.span.start,
        Instruction::Entrypoint(i) => i.entrypoint.span.start,
        Instruction::Env(i) => i.env.span.start,
        Instruction::Expose(i) => i.expose.span.start,
        Instruction::From(i) => i.from.span.start,
        Instruction::Healthcheck(i) => i.healthcheck.span.start,
        Instruction::Label(i) => i.label.span.start,
        Instruction::Maintainer(i) => i.maintainer.span.start,
        Instruction::Onbuild(i) => i.onbuild.span.start,
        Instruction::Run(i) => i.run.span.start,
        Instruction::Shell(i) => i.shell.span.start,
        Instruction::Stopsignal(i) => i.stopsignal.span.start,
        Instruction::User(i) => i.user.span.start,
        Instruction::Volume(i) => i.volume.span.start,
        Instruction::Workdir(i) => i.workdir.span.start,
        _ => 0,
    }
}

/// The instruction's source up to the next one: comment and blank lines dropped, continuation
/// lines joined (here-documents keep their lines).
fn instruction_text(raw: &str, escape: char) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        let t = line.trim_start();
        if !out.is_empty() && (t.is_empty() || t.starts_with('#')) && !out.contains("<<") {
            continue;
        }
        match line.trim_end().strip_suffix(escape) {
            Some(joined) if !out.contains("<<") => out.push_str(joined),
            _ => {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_steps_lines_and_texts() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nARG BASE=busybox\nFROM $BASE AS Build\n\n# a comment\nRUN echo a && \\\n    echo b\nCOPY --from=x --chown=1:2 a b /dst/\nFROM scratch\nCMD [\"sh\"]\nHEALTHCHECK --interval=5s CMD true\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(df.global_args, vec!["BASE=busybox".to_string()]);
        assert_eq!(df.stages.len(), 2);
        let s = &df.stages[0];
        assert_eq!((s.name.as_deref(), s.base.as_str(), s.line), (Some("build"), "$BASE", 3));
        assert_eq!(s.steps[0].line, 6);
        assert_eq!(s.steps[0].text, "RUN echo a &&     echo b");
        assert!(matches!(&s.steps[0].kind, StepKind::Run { cmd: Cmd::Shell(c), .. } if c.contains("echo b")));
        match &s.steps[1].kind {
            StepKind::Copy { add: false, flags, sources, dest } => {
                assert_eq!(flags.len(), 2);
                assert_eq!(sources.len(), 2);
                assert_eq!(dest, "/dst/");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&df.stages[1].steps[0].kind, StepKind::Cmd(Cmd::Exec(a)) if a == &vec!["sh".to_string()]));
        assert!(matches!(&df.stages[1].steps[1].kind, StepKind::Healthcheck { cmd: Some(_), .. }));
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            parse("FROM busybox\nRUN true\nBOGUS x\n").err().unwrap_or(ParseError { line: 0, message: String::new() });
        assert_eq!(e.line, 3, "{e}");
        assert!(e.to_string().starts_with("dockerfile parse error line 3:"), "{e}");
        assert_eq!(parse("RUN true\n").err().map(|e| e.line), Some(1));
        assert!(parse("  \n").is_err());
    }

    #[test]
    fn heredocs_and_onbuild_triggers() {
        let df = parse("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<EOT /greeting\nhello\nEOT\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&df.stages[0].steps[0].kind, StepKind::Run { here_docs, .. } if here_docs.len() == 1 && here_docs[0].0.contains("echo two"))
        );
        assert!(
            matches!(&df.stages[0].steps[1].kind, StepKind::Copy { sources, .. } if matches!(&sources[0], CopySource::HereDoc { content, .. } if content == "hello\n"))
        );
        let t = parse_trigger("RUN echo triggered").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.text, "RUN echo triggered");
    }
}
