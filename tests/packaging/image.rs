//! The runtime image two ways, kept equal: the Dockerfile's last stage (what a registry pipeline
//! builds) and hack/build-image's buildah assembly (what hack/test builds and runs here). The
//! script renders its assembly as Dockerfile instructions (`--spec`); both sides are normalized
//! (exec-form JSON, `port/tcp`, one LABEL/ENV per pair) and must be the same set. After its
//! commit the script checks the image's config against the same data with `buildah inspect`.

use std::process::Command;

use crate::support::{read, repo, run};

/// The Dockerfile's instructions, comments and blank lines dropped, continuations joined.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (keyword, rest) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((keyword.to_uppercase(), rest.trim().to_string()));
        pending.clear();
    }
    out
}

/// `a=b "c d"=e f="g h"` as pairs; quotes removed.
fn pairs(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quote) = (String::new(), None);
    for c in text.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

fn exec_form(keyword: &str, args: &str) -> String {
    let parsed: Vec<String> = serde_json::from_str(args).unwrap_or_else(|_| {
        panic!(
            "Dockerfile: `{keyword} {args}` is shell form; the runtime stage has no shell, use the exec form [\"...\"]"
        )
    });
    serde_json::to_string(&parsed).unwrap()
}

/// The last stage of a Dockerfile as normalized instruction lines, sorted.
fn runtime_stage(dockerfile: &str) -> Vec<String> {
    let all = instructions(dockerfile);
    let start = all
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .expect("the Dockerfile has a FROM");
    let mut lines = Vec::new();
    for (keyword, args) in &all[start..] {
        match keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = args
                    .split_whitespace()
                    .filter(|w| !w.starts_with("--platform"))
                    .collect();
                lines.push(format!("FROM {}", words[0]));
            }
            "COPY" => {
                // The source is the builder stage's binary here and hack/build-static's there;
                // the destination and any flag besides --from must agree.
                let words: Vec<&str> = args.split_whitespace().collect();
                let flags: Vec<&str> = words
                    .iter()
                    .copied()
                    .filter(|w| w.starts_with("--") && !w.starts_with("--from="))
                    .collect();
                let dest = words.last().unwrap();
                lines.push(format!(
                    "COPY {}{dest}",
                    flags.iter().map(|f| format!("{f} ")).collect::<String>()
                ));
            }
            "EXPOSE" => {
                for port in args.split_whitespace() {
                    let port = if port.contains('/') {
                        port.to_string()
                    } else {
                        format!("{port}/tcp")
                    };
                    lines.push(format!("EXPOSE {port}"));
                }
            }
            "ENTRYPOINT" | "CMD" => lines.push(format!("{keyword} {}", exec_form(keyword, args))),
            "LABEL" | "ENV" => {
                let words = pairs(args);
                if keyword == "ENV" && !words[0].contains('=') {
                    // The legacy `ENV key value` form.
                    lines.push(format!("ENV {}={}", words[0], words[1..].join(" ")));
                } else {
                    for pair in words {
                        lines.push(format!("{keyword} {pair}"));
                    }
                }
            }
            // USER, and anything the assembly does not do (RUN, WORKDIR, VOLUME, ...) as it
            // stands, so that it shows up as a difference.
            _ => lines.push(format!("{keyword} {args}")),
        }
    }
    lines.sort();
    lines
}

/// What `hack/build-image --spec` prints, sorted.
fn assembly() -> Vec<String> {
    let (ok, stdout, stderr) = run(Command::new("bash")
        .arg("hack/build-image")
        .arg("--spec")
        .current_dir(repo()));
    assert!(ok, "hack/build-image --spec failed: {stderr}");
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn the_buildah_assembly_is_the_dockerfile_runtime_stage() {
    let dockerfile = runtime_stage(&read("Dockerfile"));
    let script = assembly();
    assert_eq!(
        dockerfile, script,
        "the Dockerfile's runtime stage (left) and hack/build-image's SPEC_* block (right) differ: \
         change both (the script's block is what buildah assembles and hack/test runs)"
    );
    // What both say today, so that a parser that sees nothing cannot pass.
    for line in [
        "FROM scratch",
        "COPY /cutover",
        "USER 65532:65532",
        r#"ENTRYPOINT ["/cutover"]"#,
        r#"CMD ["run"]"#,
    ] {
        assert!(
            script.iter().any(|l| l == line),
            "the assembly lacks {line}"
        );
    }
}

#[test]
fn a_changed_runtime_stage_is_a_difference() {
    let dockerfile = read("Dockerfile");
    let script = assembly();
    assert_eq!(runtime_stage(&dockerfile), script);
    let edits: [(&str, &str); 7] = [
        ("USER 65532:65532", "USER 0:0"),
        (r#"CMD ["run"]"#, r#"CMD ["run", "--log-format", "json"]"#),
        (
            r#"ENTRYPOINT ["/cutover"]"#,
            r#"ENTRYPOINT ["/bin/cutover"]"#,
        ),
        ("EXPOSE 8080", "EXPOSE 8080 9090"),
        (
            "COPY --from=build /cutover /cutover",
            "COPY --from=build --chown=65532:65532 /cutover /cutover",
        ),
        (
            "USER 65532:65532",
            "USER 65532:65532\nLABEL org.opencontainers.image.source=\"https://example.com/x\"",
        ),
        (
            "USER 65532:65532",
            "USER 65532:65532\nENV RUST_LOG=debug \\\n    TZ=UTC\nWORKDIR /tmp",
        ),
    ];
    for (from, to) in edits {
        assert!(dockerfile.contains(from), "Dockerfile lacks {from}");
        let edited = dockerfile.replacen(from, to, 1);
        assert_ne!(
            runtime_stage(&edited),
            script,
            "replacing `{from}` by `{to}` went unnoticed"
        );
    }
    // Only the last stage counts: an edit to the builder stage is no difference.
    let builder = dockerfile.replacen("WORKDIR /src", "WORKDIR /src\nUSER 0", 1);
    assert_eq!(runtime_stage(&builder), script);
}

#[test]
fn normalization() {
    let stage = runtime_stage(
        "FROM rust AS build\nRUN x\nFROM --platform=linux/amd64 scratch AS run\n\
         # a comment\nLABEL a=1 \"b c\"=\"d e\" \\\n  f='g'\nENV K V W\nEXPOSE 80/udp 81\n\
         CMD [ \"run\" ,\"x\"]\n",
    );
    assert_eq!(
        stage,
        [
            r#"CMD ["run","x"]"#,
            "ENV K=V W",
            "EXPOSE 80/udp",
            "EXPOSE 81/tcp",
            "FROM scratch",
            "LABEL a=1",
            "LABEL b c=d e",
            "LABEL f=g",
        ]
    );
}

#[test]
#[should_panic(expected = "shell form")]
fn shell_form_is_refused() {
    runtime_stage("FROM scratch\nCMD run\n");
}

#[test]
fn hack_test_installs_builds_and_runs_the_image_after_the_static_binary() {
    let test = read("hack/test");
    let static_at = test
        .find("\nhack/build-static")
        .expect("hack/test runs hack/build-static");
    let image_at = test
        .find("\nhack/build-image")
        .expect("hack/test runs hack/build-image");
    assert!(
        static_at < image_at,
        "hack/build-image runs after hack/build-static"
    );
    let apt = read("hack/dev-install");
    let apt = apt
        .lines()
        .find(|l| l.starts_with("APT_PKGS=("))
        .expect("hack/dev-install has APT_PKGS");
    assert!(
        apt.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .any(|p| p == "buildah"),
        "hack/dev-install installs buildah: {apt}"
    );
    let script = read("hack/build-image");
    for needle in [
        "--isolation chroot",
        "check_config",
        "crds/upgradeplan.yaml",
    ] {
        assert!(script.contains(needle), "hack/build-image lacks {needle}");
    }
}
