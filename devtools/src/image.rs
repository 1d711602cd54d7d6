//! Container image references, parsed just enough for the simulators: podsim needs the
//! repository's last path component (is this an `appsim` image?) and appsim derives its
//! schema version from the tag's major number, so `appsim:3` and `appsim:3.1.0` both mean 3.

/// The parts of an image reference that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef<'a> {
    /// Everything before the tag/digest, e.g. `registry.local:5000/demo/appsim`.
    pub repository: &'a str,
    /// The tag, if any (`latest` is not implied: callers decide what a missing tag means).
    pub tag: Option<&'a str>,
}

impl<'a> ImageRef<'a> {
    /// Parses `[registry[:port]/]path[:tag][@digest]`. A `:` only starts a tag when it comes
    /// after the last `/`, otherwise it is a registry port.
    pub fn parse(image: &'a str) -> Self {
        let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
        let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
        match without_digest[last_slash..].rfind(':') {
            Some(colon) => {
                let at = last_slash + colon;
                Self {
                    repository: &without_digest[..at],
                    tag: Some(&without_digest[at + 1..]),
                }
            }
            None => Self {
                repository: without_digest,
                tag: None,
            },
        }
    }

    /// The repository's last path component (`appsim` for `registry.local/demo/appsim:3`).
    pub fn name(&self) -> &'a str {
        self.repository
            .rsplit_once('/')
            .map_or(self.repository, |(_, n)| n)
    }

    /// The tag's major version number: `3` for `3`, `3.1.0`, `v3.1`, `3-alpine`.
    pub fn major(&self) -> Option<u32> {
        let tag = self.tag?;
        let tag = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
        let digits: &str = &tag[..tag.find(|c: char| !c.is_ascii_digit()).unwrap_or(tag.len())];
        digits.parse().ok()
    }
}

/// True when the image is the app simulator (repository's last component is `appsim`).
pub fn is_appsim(image: &str) -> bool {
    ImageRef::parse(image).name() == "appsim"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_port_tag_and_digest() {
        let r = ImageRef::parse("registry.local:5000/demo/appsim:3.1@sha256:abc");
        assert_eq!(r.repository, "registry.local:5000/demo/appsim");
        assert_eq!(r.tag, Some("3.1"));
        assert_eq!(r.name(), "appsim");
        assert_eq!(r.major(), Some(3));
    }

    #[test]
    fn port_is_not_a_tag() {
        let r = ImageRef::parse("registry.local:5000/appsim");
        assert_eq!(r.repository, "registry.local:5000/appsim");
        assert_eq!(r.tag, None);
        assert_eq!(r.major(), None);
    }

    #[test]
    fn recognises_appsim_images() {
        assert!(is_appsim("cutover.dev/appsim:2"));
        assert!(is_appsim("registry.local/demo/appsim:3.1"));
        assert!(is_appsim("appsim"));
        assert!(!is_appsim("cutover.dev/appsim-tools:2"));
        assert!(!is_appsim("mongo:7.0"));
        assert!(!is_appsim("appsim/mongo:7.0"));
    }

    #[test]
    fn major_versions() {
        let major = |s| ImageRef::parse(s).major();
        assert_eq!(major("appsim:2"), Some(2));
        assert_eq!(major("appsim:3.1.0"), Some(3));
        assert_eq!(major("appsim:v4"), Some(4));
        assert_eq!(major("appsim:12-alpine"), Some(12));
        assert_eq!(major("appsim:latest"), None);
        assert_eq!(major("appsim"), None);
    }
}
