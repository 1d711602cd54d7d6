use super::*;

#[test]
fn rewrites_the_database_of_connection_strings() {
    let cases = [
        (
            "mongodb://h:27017/Squidex?replicaSet=rs0",
            "mongodb://h:27017/Squidex-up7?replicaSet=rs0",
        ),
        (
            "mongodb://u:p@h1,h2/Squidex",
            "mongodb://u:p@h1,h2/Squidex-up7?authSource=Squidex",
        ),
        (
            "mongodb://u:p@h/Squidex?authSource=admin",
            "mongodb://u:p@h/Squidex-up7?authSource=admin",
        ),
        (
            "mongodb://h/?directConnection=true",
            "mongodb://h/Squidex-up7?directConnection=true",
        ),
        ("mongodb://h", "mongodb://h/Squidex-up7"),
        (
            "mongodb+srv://u:p%2Fq@cluster.example/Squidex",
            "mongodb+srv://u:p%2Fq@cluster.example/Squidex-up7?authSource=Squidex",
        ),
    ];
    for (from, want) in cases {
        assert_eq!(with_database(from, "Squidex-up7"), want, "{from}");
    }
}

#[test]
fn the_tools_get_no_database_in_the_path() {
    // What the shell snippet in the backup/clone Jobs used to compute.
    let cases = [
        (
            "mongodb://127.0.0.1:27017/?directConnection=true",
            "mongodb://127.0.0.1:27017/?directConnection=true",
        ),
        ("mongodb://h/Squidex", "mongodb://h/"),
        (
            "mongodb://u:p@h/Squidex",
            "mongodb://u:p@h/?authSource=Squidex",
        ),
        (
            "mongodb://u:p@h/Squidex?authSource=admin&tls=false",
            "mongodb://u:p@h/?authSource=admin&tls=false",
        ),
        ("mongodb://u:p@h", "mongodb://u:p@h/"),
    ];
    for (from, want) in cases {
        assert_eq!(Uri::parse(from).unwrap().for_tools(), want, "{from}");
    }
}

#[test]
fn database_names_in_connection_strings() {
    let cases = [
        (
            "mongodb://u:p@h:27017/Squidex?authSource=admin",
            Some("Squidex"),
        ),
        ("mongodb+srv://h/Squidex", Some("Squidex")),
        ("mongodb://h:27017/?directConnection=true", None),
        ("mongodb://h:27017", None),
        ("Squidex", None),
        ("postgres://h/Squidex", None),
    ];
    for (value, want) in cases {
        assert_eq!(database(value), want, "{value}");
    }
    assert_eq!(
        Uri::parse("mongodb://u:p@h/Squidex").unwrap().database(),
        Some("Squidex")
    );
}

#[test]
fn redacts_uri_and_password() {
    let uri = Uri::parse("mongodb://app:s3cr%21t@db.local:27017/?authSource=admin").unwrap();
    let msg = "auth failed for mongodb://app:s3cr%21t@db.local:27017/?authSource=admin (password s3cr!t, raw s3cr%21t)";
    let out = uri.redact(msg);
    assert!(!out.contains("s3cr"), "{out}");
    assert!(out.contains("<connection string>"));
    assert_eq!(format!("{uri:?}"), "Uri(***)");
}

#[test]
fn checks_connection_strings() {
    assert!(Uri::parse("mongodb://127.0.0.1:27017/?directConnection=true").is_ok());
    assert!(Uri::parse("mongodb+srv://u:p@cluster.example.com/db").is_ok());
    assert_eq!(Uri::parse("postgres://x").err(), Some(UriError::Scheme));
    assert_eq!(Uri::parse("mongodb:///db").err(), Some(UriError::NoHost));
    assert_eq!(Uri::parse("").err(), Some(UriError::Scheme));
    // The driver's reason, without the string or its password.
    let bad = "mongodb://u:hunter2@h/?noSuchOption=1";
    match Uri::parse(bad) {
        Err(UriError::Invalid(why)) => {
            assert_eq!(why, "nosuchoption is an invalid option");
            assert!(!why.contains("hunter2"), "{why}");
        }
        other => panic!("{bad}: {other:?}"),
    }
    assert_eq!(
        UriError::Scheme.to_string(),
        "it must start with mongodb:// or mongodb+srv://"
    );
}
