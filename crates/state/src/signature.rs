//! SSH signatures (OpenSSH's SSHSIG format, what git uses for signed commits) over plans and
//! approvals, made and checked by the real `ssh-keygen -Y`: no cryptography of our own.
//!
//! Signing takes what `ssh-keygen -Y sign -f` takes: a private key file, or a public key
//! whose private half is in `ssh-agent`. Checking takes an allowed-signers file (git's
//! `allowedSignersFile` format: principals, options, key), kept beside the runbooks and
//! changed through review: `-Y find-principals` says whose key made a signature, `-Y verify`
//! checks it for that principal, the namespace and the exact message.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The namespace of an approval: a signature made for anything else (a git commit, a file)
/// never verifies as an approval.
pub const APPROVAL_NAMESPACE: &str = "runbook-approval@runbook";
/// The namespace of the author's signature over the plan they made.
pub const PLAN_NAMESPACE: &str = "runbook-plan@runbook";

const PROGRAM: &str = "ssh-keygen";
/// The most of a signature read from a record (an ed25519 one is ~300 bytes, RSA-4096 ~1 KB).
const MAX_SIGNATURE: usize = 16 * 1024;

fn missing(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("{PROGRAM} (OpenSSH 8.2 or later) is needed to sign and check approvals and is not on PATH")
    } else {
        format!("cannot run {PROGRAM}: {e}")
    }
}

/// Why `ssh-keygen` gave no answer: it could not be run at all, or it said no.
enum Failure {
    CannotRun(String),
    Said(String),
}

/// Runs `ssh-keygen` with `stdin` and returns its stdout, or its stderr as the error.
fn run(args: &[&std::ffi::OsStr], stdin: &[u8], interactive: bool) -> Result<String, Failure> {
    let mut command = Command::new(PROGRAM);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
    // A passphrase is asked on the terminal (ssh-keygen opens /dev/tty itself); its
    // complaints are passed on when someone is there to read them.
    command.stderr(if interactive { Stdio::inherit() } else { Stdio::piped() });
    let mut child = command.spawn().map_err(|e| Failure::CannotRun(missing(&e)))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).map_err(|e| Failure::CannotRun(format!("cannot write to {PROGRAM}: {e}")))?;
    }
    let out = child.wait_with_output().map_err(|e| Failure::CannotRun(missing(&e)))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let err = err.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    Err(Failure::Said(if err.is_empty() { format!("{PROGRAM} failed ({})", out.status) } else { err }))
}

/// Signs `message` with `key` (a private key, or a public key whose private half is in the
/// agent) under `namespace`; returns the armored signature.
pub fn sign(key: &Path, namespace: &str, message: &str, interactive: bool) -> Result<String, String> {
    if !key.is_file() {
        return Err(format!("the signing key {} is not a file", key.display()));
    }
    let args = ["-Y".as_ref(), "sign".as_ref(), "-f".as_ref(), key.as_os_str(), "-n".as_ref(), namespace.as_ref()];
    let signature = run(&args, message.as_bytes(), interactive).map_err(|e| match e {
        Failure::CannotRun(e) => e,
        Failure::Said(e) => format!("cannot sign with {}: {e}", key.display()),
    })?;
    if !signature.starts_with("-----BEGIN SSH SIGNATURE-----") {
        return Err(format!("{PROGRAM} gave no signature for {}", key.display()));
    }
    Ok(signature)
}

/// The principal of `allowed_signers` whose key made `signature` of exactly `message` under
/// `namespace`; an error says why there is none.
pub fn verified_principal(
    allowed_signers: &Path,
    namespace: &str,
    signature: &str,
    message: &str,
) -> Result<String, String> {
    if signature.len() > MAX_SIGNATURE || !signature.starts_with("-----BEGIN SSH SIGNATURE-----") {
        return Err("not an SSH signature".into());
    }
    let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("cannot write a temporary file: {e}"))?;
    file.write_all(signature.as_bytes()).map_err(|e| format!("cannot write a temporary file: {e}"))?;
    let sig = file.path().as_os_str();
    let found = run(
        &["-Y".as_ref(), "find-principals".as_ref(), "-s".as_ref(), sig, "-f".as_ref(), allowed_signers.as_os_str()],
        b"",
        false,
    )
    .map_err(|e| match e {
        Failure::CannotRun(e) => e,
        Failure::Said(_) => format!("its key is not in {}", allowed_signers.display()),
    })?;
    let mut last = String::new();
    for principal in found.lines().map(str::trim).filter(|p| !p.is_empty()) {
        let args = [
            "-Y".as_ref(),
            "verify".as_ref(),
            "-f".as_ref(),
            allowed_signers.as_os_str(),
            "-I".as_ref(),
            principal.as_ref(),
            "-n".as_ref(),
            namespace.as_ref(),
            "-s".as_ref(),
            sig,
        ];
        match run(&args, message.as_bytes(), false) {
            Ok(_) => return Ok(principal.to_owned()),
            Err(Failure::CannotRun(e)) => return Err(e),
            Err(Failure::Said(e)) => last = e,
        }
    }
    Err(if last.is_empty() {
        format!("its key is not in {}", allowed_signers.display())
    } else {
        format!("it does not verify ({last})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keygen(dir: &Path, name: &str) -> std::path::PathBuf {
        let key = dir.join(name);
        let out = Command::new(PROGRAM)
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success(), "{out:?}");
        key
    }

    #[test]
    fn a_signature_verifies_only_for_its_message_namespace_and_listed_key() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let bob = keygen(dir.path(), "bob");
        let eve = keygen(dir.path(), "eve");
        let public = std::fs::read_to_string(bob.with_extension("pub")).unwrap_or_default();
        let allowed = dir.path().join("allowed_signers");
        std::fs::write(&allowed, format!("bob@example.com {public}")).unwrap_or_else(|e| panic!("{e}"));

        let signature = sign(&bob, APPROVAL_NAMESPACE, "plan: 1\n", false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verified_principal(&allowed, APPROVAL_NAMESPACE, &signature, "plan: 1\n").as_deref(),
            Ok("bob@example.com")
        );
        let other = verified_principal(&allowed, APPROVAL_NAMESPACE, &signature, "plan: 2\n");
        assert!(other.as_ref().is_err_and(|e| e.contains("does not verify")), "{other:?}");
        assert!(verified_principal(&allowed, PLAN_NAMESPACE, &signature, "plan: 1\n").is_err());
        let by_eve = sign(&eve, APPROVAL_NAMESPACE, "plan: 1\n", false).unwrap_or_else(|e| panic!("{e}"));
        let err = verified_principal(&allowed, APPROVAL_NAMESPACE, &by_eve, "plan: 1\n");
        assert!(err.as_ref().is_err_and(|e| e.contains("not in")), "{err:?}");
        assert!(verified_principal(&allowed, APPROVAL_NAMESPACE, "junk", "plan: 1\n").is_err());
    }
}
