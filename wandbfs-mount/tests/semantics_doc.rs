//! Keeps `docs/SEMANTICS.md` honest: every row of its error table is performed on a real mount
//! (read-only, or `--allow-write` for `rw:` rows) and must fail with the errno it names.

mod mount_support;

use std::ffi::CString;
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use mount_support::*;
use wandb_emulator::{EmulatorConfig, SeedSpec};

fn errno_named(name: &str) -> i32 {
    match name {
        "ENOENT" => libc::ENOENT,
        "ENOTDIR" => libc::ENOTDIR,
        "EISDIR" => libc::EISDIR,
        "EROFS" => libc::EROFS,
        "EACCES" => libc::EACCES,
        "EXDEV" => libc::EXDEV,
        "ENODATA" => libc::ENODATA,
        "EOPNOTSUPP" => libc::EOPNOTSUPP,
        "EINVAL" => libc::EINVAL,
        "EIO" => libc::EIO,
        other => panic!("SEMANTICS.md names an errno this test does not know: {other}"),
    }
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn code(r: std::io::Result<()>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// Performs one operation of the table; `None` when it succeeded.
fn perform(op: &str, args: &[&Path], name: Option<&str>) -> Option<i32> {
    match op {
        "stat" => code(std::fs::metadata(args[0]).map(|_| ())),
        "read" => code(std::fs::File::open(args[0]).and_then(|mut f| {
            let mut buf = [0u8; 16];
            f.read(&mut buf).map(|_| ())
        })),
        "readdir" => code(std::fs::read_dir(args[0]).map(|_| ())),
        "create" => code(std::fs::File::create(args[0]).map(|_| ())),
        "write" => code(
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(args[0])
                .map(|_| ()),
        ),
        "unlink" => code(std::fs::remove_file(args[0])),
        "rename" => code(std::fs::rename(args[0], args[1])),
        "link" => code(std::fs::hard_link(args[0], args[1])),
        "readlink" => code(std::fs::read_link(args[0]).map(|_| ())),
        "getxattr" | "setxattr" => {
            let path = c_path(args[0]);
            let attr = CString::new(name.expect("an attribute name")).unwrap();
            let mut buf = [0u8; 64];
            // SAFETY: valid C strings and buffer.
            let rc = unsafe {
                if op == "getxattr" {
                    libc::getxattr(
                        path.as_ptr(),
                        attr.as_ptr(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                    )
                } else {
                    libc::setxattr(path.as_ptr(), attr.as_ptr(), b"v".as_ptr().cast(), 1, 0)
                        as isize
                }
            };
            (rc < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
        }
        other => panic!("SEMANTICS.md uses an operation this test does not know: {other}"),
    }
}

struct Row {
    case: String,
    rw: bool,
    op: String,
    operands: Vec<String>,
    errno: String,
}

fn rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SEMANTICS.md"))
        .expect("docs/SEMANTICS.md");
    let table = doc
        .split("<!-- semantics-table -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- /semantics-table -->").next())
        .expect("the marked table");
    table
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| Case") && !l.starts_with("|---"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let mut command = cells[1].trim_matches('`');
            let rw = command.starts_with("rw: ");
            if rw {
                command = &command[4..];
            }
            let mut words = command.split_whitespace();
            Row {
                case: cells[0].to_owned(),
                rw,
                op: words.next().unwrap().to_owned(),
                operands: words.map(str::to_owned).collect(),
                errno: cells[2].to_owned(),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_table_holds() {
    let rows = rows();
    assert!(rows.len() >= 12, "{} rows", rows.len());
    let env = Env::new(
        EmulatorConfig::default().seed(
            SeedSpec::new("alice", "sem")
                .runs(2)
                .steps(20)
                .files(5)
                .bigfile(0)
                .artifacts(1)
                .artifact_bigfile(1 << 20),
        ),
    )
    .await;
    let run = env.emu.runs("alice", "sem")[0].name.clone();
    env.sync("alice/sem");
    for rw in [false, true] {
        let mount = env.mount(if rw { &["--allow-write"] } else { &[] });
        let project = mount.join("alice/sem");
        let version = sh_ok(&format!("ls -d {}/artifacts/*/*/v0", project.display()));
        let substitute = |text: &str| {
            text.replace("{run}", &format!("{}/{run}", project.display()))
                .replace("{project}", &project.display().to_string())
                .replace("{version}", version.trim())
        };
        for row in rows.iter().filter(|r| r.rw == rw) {
            let (paths, name): (Vec<String>, Option<&str>) = match row.op.as_str() {
                "getxattr" | "setxattr" => (
                    vec![substitute(&row.operands[0])],
                    Some(row.operands[1].as_str()),
                ),
                _ => (row.operands.iter().map(|o| substitute(o)).collect(), None),
            };
            let paths: Vec<&Path> = paths.iter().map(Path::new).collect();
            let got = perform(&row.op, &paths, name);
            assert_eq!(
                got,
                Some(errno_named(&row.errno)),
                "SEMANTICS.md row {:?}: {} {:?} gave {got:?}, the table says {}",
                row.case,
                row.op,
                paths,
                row.errno
            );
        }
        mount.unmount();
    }
}
