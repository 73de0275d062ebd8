use super::*;

fn proxy(id: &str, url: &str, no_proxy: &[&str]) -> Arc<UpstreamProxy> {
    Arc::new(UpstreamProxy {
        id: id.into(),
        label: format!("{id} label"),
        url: ProxyUrl::parse(url).unwrap(),
        no_proxy: no_proxy
            .iter()
            .map(|n| NoProxy::parse(n).unwrap())
            .collect(),
        connect_to: ConnectTo::Name,
        revision: String::new(),
    })
}

fn node(default: Option<&str>, env: bool) -> NodeProxies {
    NodeProxies {
        list: vec![
            proxy("corp", "http://corp.example:3128", &[]),
            proxy("tenant", "https://tenant.example", &[]),
        ],
        default: default.map(str::to_owned),
        env: env.then(|| proxy("env", "http://env.example:8080", &[])),
        ..NodeProxies::default()
    }
}

fn chose(text: &str) -> Level {
    let choice = ProxyChoice::parse(text).unwrap();
    let built = match &choice {
        ProxyChoice::Url(url) => Some(Arc::new(UpstreamProxy::from_url(
            "session",
            ProxyUrl::parse(url).unwrap(),
        ))),
        _ => None,
    };
    Level::Chose(choice, built)
}

fn picked(sandbox: &Level, session: &Level, node: &NodeProxies) -> String {
    match resolve(sandbox, session, node) {
        Ok(egress) => egress.key().into_owned(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn each_level_overrides_the_ones_below_and_none_forces_direct() {
    use Level::Inherit;
    let cases: &[(Level, Level, NodeProxies, &str)] = &[
        (Inherit, Inherit, node(None, false), "direct"),
        (Inherit, Inherit, node(None, true), "env"),
        (Inherit, Inherit, node(Some("corp"), true), "corp"),
        (Inherit, chose("tenant"), node(Some("corp"), true), "tenant"),
        (
            Inherit,
            chose("http://s.example:3128"),
            node(Some("corp"), true),
            "session",
        ),
        (Inherit, chose("none"), node(Some("corp"), true), "direct"),
        (chose("corp"), chose("tenant"), node(None, true), "corp"),
        (
            chose("none"),
            chose("tenant"),
            node(Some("corp"), true),
            "direct",
        ),
        (
            chose("tenant"),
            chose("none"),
            node(Some("corp"), true),
            "tenant",
        ),
    ];
    for (i, (sandbox, session, node, want)) in cases.iter().enumerate() {
        assert_eq!(picked(sandbox, session, node), *want, "case {i}");
    }
}

#[test]
fn an_unknown_id_is_an_error_never_direct() {
    let got = picked(&chose("gone"), &Level::Inherit, &node(None, true));
    assert!(
        got.starts_with("error:") && got.contains("\"gone\""),
        "{got}"
    );
    let got = picked(&Level::Inherit, &chose("gone"), &node(Some("corp"), false));
    assert!(got.contains("session"), "{got}");
    let mut dangling = node(None, false);
    dangling.default = Some("missing".into());
    assert!(picked(&Level::Inherit, &Level::Inherit, &dangling).starts_with("error:"));
}

#[test]
fn urls_parse_with_percent_encoded_credentials_and_always_print_masked() {
    let url = ProxyUrl::parse("http://ag%40ent:p%3Ass@proxy.example:3128").unwrap();
    assert_eq!(url.user.as_deref(), Some("ag@ent"));
    assert_eq!(url.password.as_ref().unwrap().expose(), b"p:ss");
    assert_eq!(url.authority(), "proxy.example:3128");
    assert_eq!(url.to_string(), "http://ag@ent:***@proxy.example:3128");
    assert!(!format!("{url:?}").contains("p:ss"));
    assert_eq!(
        url.basic_auth().unwrap(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ag@ent:p:ss")
        )
    );
    let v6 = ProxyUrl::parse("https://[2001:db8::5]").unwrap();
    assert_eq!(
        (v6.tls, v6.authority()),
        (true, "[2001:db8::5]:443".to_owned())
    );
    for bad in [
        "socks5://proxy:1080",
        "proxy:3128",
        "http://proxy:3128/path",
        "http://proxy:3128/?q=1",
        "http://:pw@/",
    ] {
        let err = ProxyUrl::parse(bad).unwrap_err();
        assert!(matches!(err, ProxyConfigError::Url(_)), "{bad}: {err}");
    }
    let err = ProxyUrl::parse("ftp://user:hunter2@proxy").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert_eq!(
        mask("http://u:secret@h:1/x"),
        format!("http://u:{MASK}@h:1/x")
    );
}

#[test]
fn choices_parse_as_none_an_id_or_a_url() {
    assert_eq!(ProxyChoice::parse("none").unwrap(), ProxyChoice::Direct);
    assert_eq!(
        ProxyChoice::parse("corp-1").unwrap(),
        ProxyChoice::Id("corp-1".into())
    );
    assert!(matches!(
        ProxyChoice::parse("http://p:1").unwrap(),
        ProxyChoice::Url(_)
    ));
    for bad in ["Corp", "a b", "", "socks5://p:1"] {
        assert!(ProxyChoice::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn no_proxy_is_port_aware() {
    let dest = |s: &str| s.parse::<SocketAddr>().unwrap();
    let host = |s: &str| Host::parse(s).unwrap();
    let cases = [
        ("api.test", Some("api.test"), "198.51.100.10:443", true),
        ("api.test", Some("x.api.test"), "198.51.100.10:443", false),
        ("*.test", Some("x.api.test"), "198.51.100.10:443", true),
        (".api.test", Some("api.test"), "198.51.100.10:443", true),
        (".api.test", Some("x.api.test"), "198.51.100.10:443", true),
        (
            "api.test:8443",
            Some("api.test"),
            "198.51.100.10:443",
            false,
        ),
        ("api.test:443", Some("api.test"), "198.51.100.10:443", true),
        ("198.51.100.0/24", None, "198.51.100.10:7", true),
        ("198.51.100.0/24:22", None, "198.51.100.10:7", false),
        ("[2001:db8::/32]:443", None, "[2001:db8::1]:443", true),
        ("198.51.100.10", Some("api.test"), "198.51.100.10:443", true),
    ];
    for (entry, name, to, want) in cases {
        let rule = NoProxy::parse(entry).unwrap_or_else(|| panic!("{entry} parses"));
        let name = name.map(host);
        assert_eq!(
            rule.matches(name.as_ref(), dest(to)),
            want,
            "{entry} vs {to}"
        );
    }
    for bad in ["", "a b", "host:0", "host:x", "[::1", "*"] {
        assert!(NoProxy::parse(bad).is_none(), "{bad}");
    }
    let corp = proxy("corp", "http://c:1", &["api.test"]);
    assert!(corp.bypassed(Some(&host("api.test")), dest("198.51.100.10:443")));
    assert!(!corp.bypassed(Some(&host("b.test")), dest("198.51.100.10:443")));
    assert!(
        !corp.bypassed(None, dest("198.51.100.10:443")),
        "no name, no host match"
    );
}

#[test]
fn the_environment_names_a_proxy_and_a_bad_value_is_an_error() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let got = NodeProxies::env_proxy(vars(&[
        ("PROXY_URL", "http://b:2"),
        ("SLUICE_PROXY_URL", "http://a:1"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(got.url.authority(), "a:1");
    let got = NodeProxies::env_proxy(vars(&[("PROXY_URL", "http://b:2")])).unwrap();
    assert_eq!(got.unwrap().url.authority(), "b:2");
    assert!(NodeProxies::env_proxy(vars(&[])).unwrap().is_none());
    assert!(NodeProxies::env_proxy(vars(&[("PROXY_URL", "socks5://x:1")])).is_err());
}

#[test]
fn odd_url_shapes_never_show_a_password() {
    for text in [
        "http:/agent:pw-secret@p:3128",
        "http:agent:pw-secret@p",
        "http:\\\\agent:pw-secret@p",
        "http:///agent:pw-secret@p:3128",
        "http://agent:pw#secret@p:3128",
        "http://agent:pw/secret@p:3128",
        "http://agent:pw?secret@p:3128",
    ] {
        let shown = mask(text);
        assert!(!shown.contains("secret"), "{text} -> {shown}");
        if let Err(e) = ProxyUrl::parse(text) {
            assert!(!e.to_string().contains("secret"), "{text}: {e}");
        }
        let (kept, _) = split_password(text);
        assert!(!kept.contains("secret"), "{text} stored as {kept}");
    }
    for text in [
        "http:/agent:pw@p:3128",
        "http:///agent:pw@p:3128",
        "HTTP:agent:pw@p",
    ] {
        assert!(
            ProxyUrl::parse(text).is_err(),
            "{text} is not written as http://"
        );
    }
    let (kept, password) = split_password("http://agent:p%40ss@proxy.example:3128");
    assert_eq!(kept, "http://agent@proxy.example:3128/");
    assert_eq!(password.as_deref(), Some("p%40ss"));
    assert_eq!(split_password("corp"), ("corp".to_owned(), None));
    assert_eq!(split_password("none"), ("none".to_owned(), None));
}

#[test]
fn reserved_words_are_not_ids() {
    for id in ["none", "direct", "refused", "env"] {
        assert!(check_id(id).is_err(), "{id}");
    }
    let spec = ProxySpec {
        id: "env".into(),
        label: None,
        url: "http://p:1".into(),
        default: false,
        no_proxy: Vec::new(),
        connect_to: ConnectTo::Name,
    };
    assert!(NodeProxies::build(&[spec], None).is_err());
}
