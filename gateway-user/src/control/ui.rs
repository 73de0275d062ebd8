//! The dashboard's files (`gateway-user/ui/`), built into the binary and served under `/ui/`
//! without authentication: they hold no data. The page asks for the admin token and sends it
//! as a bearer header on its API calls; a strict Content-Security-Policy allows only this
//! origin's scripts and styles, so an audit record that carries markup cannot run.

/// `Content-Security-Policy` of every dashboard file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under `/ui/`, media type and contents.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! assets {
    ($($name:literal => $type:ident),* $(,)?) => {
        &[$(Asset { name: $name, content_type: $type, body: include_str!(concat!("../../ui/", $name)) }),*]
    };
}

const ASSETS: &[Asset] = assets![
    "index.html" => HTML,
    "style.css" => CSS,
    "app.js" => JS,
    "api.js" => JS,
    "dom.js" => JS,
    "stream.js" => JS,
    "live.js" => JS,
    "sessions.js" => JS,
    "sandboxes.js" => JS,
    "policy.js" => JS,
    "node.js" => JS,
];

/// The file at `/ui/<name>` (`""` is the page): its media type and contents.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    let name = if name.is_empty() { "index.html" } else { name };
    ASSETS
        .iter()
        .find(|a| a.name == name)
        .map(|a| (a.content_type, a.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_served_with_its_type() {
        let (html_type, page) = asset("").unwrap();
        assert!(html_type.starts_with("text/html"));
        // Every module the page or another module imports is embedded.
        for (_, body) in ASSETS.iter().map(|a| (a.name, a.body)) {
            for import in body.split("from './").skip(1) {
                let file = import.split('\'').next().unwrap();
                let (kind, _) = asset(file).unwrap_or_else(|| panic!("{file} is not embedded"));
                assert_eq!(kind, JS);
            }
        }
        assert!(page.contains("app.js") && page.contains("style.css"));
        assert_eq!(asset("style.css").unwrap().0, CSS);
        assert!(asset("../Cargo.toml").is_none() && asset("nope.js").is_none());
    }
}
