//! `weft demo` as a newcomer runs it: one command, as root. It must build
//! the seed scenario, print a matrix where every cell is as expected and a
//! trace of G1 → G4, and leave no namespace or process behind, also when
//! interrupted with Ctrl-C (SIGINT) while it builds or while it holds.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn demo(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft demo starts")
}

/// The lab's namespaces of process `pid` that still exist.
fn leftovers(pid: u32) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("wl{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Waits for the child to exit (at most `secs`), returning (success, stdout, stderr).
fn finish(mut c: Child, secs: u64) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("weft demo did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (status.success(), out, err)
}

/// Reads the child's stdout until a line contains `needle` (at most `secs`),
/// returning what was read; the pipe stays open.
fn read_until(c: &mut Child, needle: &str, secs: u64) -> String {
    let mut out = c.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_string();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            if text.contains(&needle) {
                break;
            }
        }
        let _ = tx.send((text, out));
    });
    let (text, out) = rx
        .recv_timeout(Duration::from_secs(secs))
        .expect("the demo printed the awaited line in time");
    c.stdout = Some(out);
    text
}

fn sigint(c: &Child) {
    let ok = Command::new("kill")
        .args(["-INT", &c.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT failed");
}

#[test]
fn demo_shows_the_seed_matrix_and_a_trace_then_cleans_up() {
    let c = demo(&[]);
    let pid = c.id();
    let (ok, out, err) = finish(c, 120);
    println!("{out}");
    assert!(ok, "weft demo failed:\n{out}\n{err}");
    assert!(out.contains("RESULT: PASS"), "{out}");
    // Overlapping addresses: G1 pinging Red's 10.1.1.6 is answered by Blue's G3.
    let g1 = out.lines().find(|l| l.starts_with("G1(B)")).unwrap();
    assert_eq!(
        g1.split_whitespace().collect::<Vec<_>>(),
        ["G1(B)", ".", "ok", "ok", "ok", "--(self)", "--(G3)"]
    );
    assert!(
        out.contains("verdict: delivered to port g4"),
        "the trace reaches G4:\n{out}"
    );
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn ctrl_c_while_holding_removes_everything() {
    let mut c = demo(&["--hold"]);
    let pid = c.id();
    let text = read_until(&mut c, "Press Ctrl-C", 120);
    assert!(text.contains("RESULT: PASS"), "{text}");
    assert!(!leftovers(pid).is_empty(), "the lab runs while held");
    let t0 = Instant::now();
    sigint(&c);
    let (ok, _, err) = finish(c, 30);
    assert!(ok, "a held demo ends cleanly on Ctrl-C: {err}");
    println!("cleaned up {:?} after Ctrl-C", t0.elapsed());
    assert_eq!(leftovers(pid), Vec::<String>::new());
}

#[test]
fn ctrl_c_while_building_removes_everything() {
    let mut c = demo(&[]);
    let pid = c.id();
    read_until(&mut c, "host host-a", 60);
    sigint(&c);
    let (ok, _, err) = finish(c, 30);
    assert!(!ok, "an interrupted demo reports it");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(leftovers(pid), Vec::<String>::new());
}
