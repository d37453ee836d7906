//! Java web apps end to end: a servlet compiled here with `javac` against the servlet API, packed
//! as a WAR (and laid out as an exploded WAR directory), pushed with our `af` binary, staged
//! into Jetty and asked through the router. A machine without a JDK or Jetty 9 fails these
//! tests: `.ci/run` installs both.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::transcript::{Af, Session};

const SERVLET: &str = r#"
import java.io.IOException;
import java.io.PrintWriter;
import javax.servlet.http.HttpServlet;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;

public class Hello extends HttpServlet {
    @Override
    protected void doGet(HttpServletRequest request, HttpServletResponse response)
            throws IOException {
        response.setContentType("text/plain");
        PrintWriter out = response.getWriter();
        out.println("greeting=hello from a servlet");
        out.println("VCAP_APP_PORT=" + System.getenv("VCAP_APP_PORT"));
        out.println("local_port=" + request.getLocalPort());
        out.println("VCAP_SERVICES=" + System.getenv("VCAP_SERVICES"));
        out.println("tmpdir=" + System.getProperty("java.io.tmpdir"));
        out.println("max_heap=" + Runtime.getRuntime().maxMemory());
    }
}
"#;

/// A Servlet 2.5 descriptor, as the WARs of v1's day had.
const WEB_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="http://java.sun.com/xml/ns/javaee" version="2.5">
  <servlet>
    <servlet-name>hello</servlet-name>
    <servlet-class>Hello</servlet-class>
  </servlet>
  <servlet-mapping>
    <servlet-name>hello</servlet-name>
    <url-pattern>/hello</url-pattern>
  </servlet-mapping>
</web-app>
"#;

const INDEX_JSP: &str = "<%= \"jsp says \" + (6 * 7) %>\n";

const SERVLET_API: &str = "/usr/share/java/servlet-api.jar";

/// Fails (never skips) when what a Java web app needs is missing.
fn require_java_tools() {
    let javac = std::process::Command::new("javac").arg("-version").output();
    assert!(
        javac.is_ok_and(|output| output.status.success()),
        "javac is needed to compile the test's servlet (.ci/run installs default-jdk-headless)"
    );
    assert!(
        Path::new(SERVLET_API).is_file(),
        "{SERVLET_API} is needed to compile the servlet (.ci/run installs jetty9, which brings it)"
    );
    assert!(
        Path::new("/usr/share/jetty9/start.jar").is_file(),
        "Jetty 9 is needed to run Java web apps (.ci/run installs jetty9)"
    );
}

/// The exploded WAR in `dir`: `WEB-INF/web.xml`, the compiled servlet, a JSP.
fn exploded_war(dir: &Path) {
    require_java_tools();
    let sources = tempfile::tempdir().unwrap();
    std::fs::write(sources.path().join("Hello.java"), SERVLET).unwrap();
    let classes = dir.join("WEB-INF/classes");
    std::fs::create_dir_all(&classes).unwrap();
    let output = std::process::Command::new("javac")
        .args(["-cp", SERVLET_API, "-d"])
        .arg(&classes)
        .arg(sources.path().join("Hello.java"))
        .output()
        .unwrap();
    assert!(output.status.success(), "javac: {output:?}");
    std::fs::write(dir.join("WEB-INF/web.xml"), WEB_XML).unwrap();
    std::fs::write(dir.join("index.jsp"), INDEX_JSP).unwrap();
}

/// A `.war` of the given entries (name, bytes).
fn war(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        writer
            .start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut writer, bytes).unwrap();
    }
    writer.finish().unwrap();
}

/// Every file under `dir`, by its path inside it.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    files
}

async fn logged_in() -> Session {
    let session = Session::start().await;
    run(&session, "af target {API}").await;
    run(&session, "af login --email dev@example.com --passwd secret").await;
    session
}

/// Our `af` binary; the command must succeed. Its output.
async fn run(session: &Session, line: &str) -> String {
    let (output, status) = session.af(&Af::Binary, line, &[], false).await;
    assert_eq!(status, 0, "{line}:\n{output}");
    output
}

/// The servlet's `name=value` lines.
fn answer(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_war_runs_in_the_servlet_container() {
    let session = logged_in().await;
    let exploded = tempfile::tempdir().unwrap();
    exploded_war(exploded.path());
    // af uploads a directory's top-level .war, unpacked.
    let app = session.scratch.path().join("hello");
    std::fs::create_dir(&app).unwrap();
    war(&app.join("hello.war"), &files_of(exploded.path()));

    let pushed = run(
        &session,
        "af push hello --path {TMP}/hello -n --url hello.example.com --mem 256M",
    )
    .await;
    assert!(
        pushed.contains("Starting Application 'hello': OK"),
        "{pushed}"
    );

    let response = session.emu.get("hello.example.com", "/hello").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = answer(&response.body);
    assert_eq!(seen["greeting"], "hello from a servlet");
    // Jetty listens on the instance's port, which the app is told.
    assert_eq!(seen["VCAP_APP_PORT"], seen["local_port"]);
    assert_eq!(seen["VCAP_SERVICES"], "{}");
    // Its temporary files stay in the instance; its heap is the app's memory, as v1 set it.
    assert!(
        seen["tmpdir"].contains("/instances/hello-") && seen["tmpdir"].ends_with("/jetty/tmp"),
        "{}",
        seen["tmpdir"]
    );
    let max_heap: u64 = seen["max_heap"].parse().unwrap();
    assert!(
        (200 << 20..=256 << 20).contains(&max_heap),
        "max heap {max_heap} for 256M"
    );

    let root = run(&session, "af files hello").await;
    let names: Vec<&str> = root
        .split_whitespace()
        .filter(|w| w.ends_with('/'))
        .collect();
    assert_eq!(names, ["app/", "jetty/", "logs/"], "{root}");
    let web_xml = run(&session, "af files hello app/WEB-INF/web.xml").await;
    assert!(web_xml.contains("<servlet-class>Hello</servlet-class>"));
    let staging_log = run(&session, "af files hello logs/staging.log").await;
    assert!(
        staging_log.contains("Running the WAR in Jetty"),
        "{staging_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exploded_war_runs_with_its_services_and_jsps() {
    let session = logged_in().await;
    let app = session.scratch.path().join("exploded");
    exploded_war(&app);

    run(
        &session,
        "af push exploded --path {TMP}/exploded -n --url exploded.example.com --mem 128M --no-start --infra aws",
    )
    .await;
    run(
        &session,
        "af create-service mongodb -n --name docs --bind exploded --infra aws",
    )
    .await;
    run(&session, "af start exploded").await;

    let response = session.emu.get("exploded.example.com", "/hello").await;
    assert_eq!(response.status, 200, "{}", response.body);
    let seen = answer(&response.body);
    let services: serde_json::Value = serde_json::from_str(&seen["VCAP_SERVICES"]).unwrap();
    let bound = services
        .as_object()
        .unwrap()
        .values()
        .flat_map(|list| list.as_array().unwrap())
        .map(|service| service["name"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(bound, ["docs"], "{services}");
    // A JSP, compiled by the container on its first request.
    let jsp = session.emu.get("exploded.example.com", "/index.jsp").await;
    assert_eq!(
        (jsp.status, jsp.body.trim()),
        (200, "jsp says 42"),
        "{}",
        jsp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_war_without_web_inf_fails_staging_with_the_reason() {
    let session = logged_in().await;
    let app = session.scratch.path().join("nowebinf");
    std::fs::create_dir(&app).unwrap();
    // A .war is a Java web app to af whatever it holds.
    war(
        &app.join("site.war"),
        &[("index.html".to_owned(), b"<p>hi</p>\n".to_vec())],
    );

    let (pushed, status) = session
        .af(
            &Af::Binary,
            "af push nowebinf --path {TMP}/nowebinf -n --url nowebinf.example.com",
            &[],
            false,
        )
        .await;
    assert_eq!(status, 1, "{pushed}");
    assert!(
        pushed.contains("Staging failed: 'no WEB-INF/ in the upload"),
        "{pushed}"
    );
    let staging_log = run(&session, "af files nowebinf logs/staging.log").await;
    assert!(
        staging_log.contains("-----> Staging failed: no WEB-INF/ in the upload"),
        "{staging_log}"
    );
}
