//! Private key files on Windows, where access control lists take the place of Unix mode bits
//! (`st_mode` says 0o666 for any writable file there).
//!
//! - Writing: the file gets a protected DACL (no inherited entries) granting full access to
//!   the current user, SYSTEM and Administrators only: the Windows form of mode 0600.
//! - Loading: a file whose DACL lets Everyone, Users or Authenticated Users read it is refused,
//!   as is a file without a DACL (which grants everyone everything). Files written by other
//!   tools (the reference client) that inherit their folder's owner/SYSTEM/Administrators
//!   entries, as in a user's profile, load.

use std::ffi::c_void;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, PSID};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
    GetNamedSecurityInfoW, SetNamedSecurityInfoW, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows_sys::Win32::Security::{
    CreateWellKnownSid, EqualSid, GetAce, GetSecurityDescriptorDacl, GetTokenInformation,
    TokenUser, WinAuthenticatedUserSid, WinBuiltinUsersSid, WinWorldSid, ACCESS_ALLOWED_ACE,
    ACE_HEADER, ACL, DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER, WELL_KNOWN_SID_TYPE,
};
use windows_sys::Win32::System::Memory::LocalFree;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

use crate::error::{CoreError, CoreResult};

const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
/// An ACE that only passes to children and does not apply to the file itself.
const INHERIT_ONLY_ACE: u8 = 0x08;
/// Rights that let a trustee read the file's contents.
const FILE_READ_DATA: u32 = 0x0001;
const GENERIC_ALL: u32 = 0x1000_0000;
const GENERIC_READ: u32 = 0x8000_0000;
const READ_RIGHTS: u32 = FILE_READ_DATA | GENERIC_READ | GENERIC_ALL;
/// SECURITY_MAX_SID_SIZE.
const MAX_SID_BYTES: usize = 68;

/// Groups that must not be able to read a private key file.
const BROAD_GROUPS: [(WELL_KNOWN_SID_TYPE, &str); 3] = [
    (WinWorldSid, "Everyone"),
    (WinBuiltinUsersSid, "Users"),
    (WinAuthenticatedUserSid, "Authenticated Users"),
];

fn wide(text: &std::ffi::OsStr) -> Vec<u16> {
    text.encode_wide().chain(std::iter::once(0)).collect()
}

fn os_error(what: &str, code: u32) -> CoreError {
    CoreError::Io(std::io::Error::new(
        std::io::Error::from_raw_os_error(code as i32).kind(),
        format!("{what} failed (Windows error {code})"),
    ))
}

fn last_error(what: &str) -> CoreError {
    let code = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    os_error(what, code as u32)
}

/// Memory Windows allocated for us with LocalAlloc, freed with LocalFree on drop.
struct LocalBox(*mut c_void);

impl Drop for LocalBox {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to need LocalFree.
            unsafe { LocalFree(self.0 as isize) };
        }
    }
}

/// The current user's SID as an SDDL string ("S-1-5-21-...").
fn current_user_sid_string() -> CoreResult<String> {
    let mut token: HANDLE = 0;
    // SAFETY: GetCurrentProcess returns a pseudo-handle; `token` is a valid out-pointer.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(last_error("OpenProcessToken"));
    }
    // TOKEN_USER plus the SID it points into: 8-byte aligned storage.
    let mut buf = [0u64; 64];
    let mut needed = 0u32;
    // SAFETY: `buf` is writable for the size given; `token` was opened above.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buf.as_mut_ptr().cast(),
            std::mem::size_of_val(&buf) as u32,
            &mut needed,
        )
    };
    // SAFETY: closing the handle opened above.
    unsafe { CloseHandle(token) };
    if ok == 0 {
        return Err(last_error("GetTokenInformation"));
    }
    // SAFETY: GetTokenInformation(TokenUser) filled `buf` with a TOKEN_USER.
    let sid = unsafe { (*(buf.as_ptr() as *const TOKEN_USER)).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` points into `buf`; `text` receives a LocalAlloc'ed string.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(last_error("ConvertSidToStringSidW"));
    }
    let owned = LocalBox(text.cast());
    // SAFETY: a NUL-terminated UTF-16 string from ConvertSidToStringSidW.
    let len = (0..).take_while(|&i| unsafe { *text.add(i) } != 0).count();
    // SAFETY: `len` units before the terminator.
    let units = unsafe { std::slice::from_raw_parts(text, len) };
    let result = String::from_utf16_lossy(units);
    drop(owned);
    Ok(result)
}

/// Replace `path`'s DACL by a protected one: full access for the current user, SYSTEM and
/// Administrators, nothing for anyone else, nothing inherited.
pub(super) fn restrict_to_owner(path: &Path) -> CoreResult<()> {
    let sddl = format!(
        "D:P(A;;FA;;;{})(A;;FA;;;SY)(A;;FA;;;BA)",
        current_user_sid_string()?
    );
    let sddl = wide(std::ffi::OsStr::new(&sddl));
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; `descriptor` receives a LocalAlloc'ed descriptor.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_error(
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
        ));
    }
    let _descriptor = LocalBox(descriptor);
    let (mut present, mut defaulted) = (0i32, 0i32);
    let mut dacl: *mut ACL = std::ptr::null_mut();
    // SAFETY: `descriptor` is valid until `_descriptor` drops; out-pointers are valid.
    if unsafe { GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted) }
        == 0
        || present == 0
    {
        return Err(last_error("GetSecurityDescriptorDacl"));
    }
    let name = wide(path.as_os_str());
    // SAFETY: `name` is NUL-terminated; `dacl` lives inside `descriptor`.
    let code = unsafe {
        SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    if code != 0 {
        return Err(os_error("SetNamedSecurityInfoW", code));
    }
    Ok(())
}

/// Refuse a private key file that Everyone, Users or Authenticated Users may read.
pub(super) fn check_not_shared(path: &Path) -> CoreResult<()> {
    let name = wide(path.as_os_str());
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `name` is NUL-terminated; `descriptor` receives a LocalAlloc'ed descriptor
    // that `dacl` points into.
    let code = unsafe {
        GetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if code != 0 {
        return Err(os_error("GetNamedSecurityInfoW", code));
    }
    let _descriptor = LocalBox(descriptor);
    let refuse = |who: &str| {
        CoreError::KeyPermission(format!(
            "the private key file {} is readable by {who}; restrict it to your account, e.g. \
             icacls \"{}\" /inheritance:r /grant:r \"%USERNAME%\":F",
            path.display(),
            path.display()
        ))
    };
    if dacl.is_null() {
        return Err(refuse("everyone (it has no access control list)"));
    }
    let mut groups = [[0u8; MAX_SID_BYTES]; BROAD_GROUPS.len()];
    for (slot, (kind, _)) in groups.iter_mut().zip(BROAD_GROUPS) {
        let mut size = MAX_SID_BYTES as u32;
        // SAFETY: `slot` holds SECURITY_MAX_SID_SIZE bytes, as `size` says.
        if unsafe {
            CreateWellKnownSid(
                kind,
                std::ptr::null_mut(),
                slot.as_mut_ptr().cast(),
                &mut size,
            )
        } == 0
        {
            return Err(last_error("CreateWellKnownSid"));
        }
    }
    // SAFETY: `dacl` is a valid ACL inside `descriptor`.
    let count = unsafe { (*dacl).AceCount };
    for index in 0..u32::from(count) {
        let mut ace: *mut c_void = std::ptr::null_mut();
        // SAFETY: `index` < AceCount; `ace` receives a pointer into the ACL.
        if unsafe { GetAce(dacl, index, &mut ace) } == 0 {
            return Err(last_error("GetAce"));
        }
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { &*(ace as *const ACE_HEADER) };
        if header.AceType != ACCESS_ALLOWED_ACE_TYPE || header.AceFlags & INHERIT_ONLY_ACE != 0 {
            continue;
        }
        // SAFETY: an ACCESS_ALLOWED_ACE by its type; its SID starts at SidStart.
        let allowed = unsafe { &*(ace as *const ACCESS_ALLOWED_ACE) };
        if allowed.Mask & READ_RIGHTS == 0 {
            continue;
        }
        let sid = std::ptr::addr_of!(allowed.SidStart) as PSID;
        for (group, (_, who)) in groups.iter_mut().zip(BROAD_GROUPS) {
            // SAFETY: both are valid SIDs.
            if unsafe { EqualSid(sid, group.as_mut_ptr().cast()) } != 0 {
                return Err(refuse(who));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ClientKeyPair;

    /// Give `path` the DACL of an SDDL string ("D:..."), as another tool might have.
    fn set_dacl(path: &Path, sddl: &str, protected: bool) {
        let sddl = wide(std::ffi::OsStr::new(sddl));
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        let (mut present, mut defaulted) = (0i32, 0i32);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        let name = wide(path.as_os_str());
        let info = DACL_SECURITY_INFORMATION
            | if protected {
                PROTECTED_DACL_SECURITY_INFORMATION
            } else {
                0
            };
        // SAFETY: test-only calls with valid, NUL-terminated inputs.
        unsafe {
            assert_ne!(
                ConvertStringSecurityDescriptorToSecurityDescriptorW(
                    sddl.as_ptr(),
                    SDDL_REVISION_1,
                    &mut descriptor,
                    std::ptr::null_mut(),
                ),
                0
            );
            let _descriptor = LocalBox(descriptor);
            assert_ne!(
                GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted),
                0
            );
            let code = SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                info,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                dacl,
                std::ptr::null(),
            );
            assert_eq!(code, 0, "SetNamedSecurityInfoW");
        }
    }

    fn saved_key(dir: &Path) -> (ClientKeyPair, std::path::PathBuf) {
        let kp = ClientKeyPair::generate(2048).unwrap();
        let private = dir.join("private.pem");
        kp.save(&private, &dir.join("public.pem"), Some(b"windows-acl-test"))
            .unwrap();
        (kp, private)
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nomyo-acl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn saved_private_key_is_owner_only_and_loads() {
        let dir = temp_dir("saved");
        let (kp, private) = saved_key(&dir);
        check_not_shared(&private).unwrap();
        let again = ClientKeyPair::load(&private, Some(b"windows-acl-test")).unwrap();
        assert_eq!(again.fingerprint(), kp.fingerprint());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn key_readable_by_broad_groups_is_refused() {
        let dir = temp_dir("broad");
        let (_kp, private) = saved_key(&dir);
        let user = current_user_sid_string().unwrap();
        // Every broad group, with each kind of read right, explicit or inherited.
        for group in ["WD", "BU", "AU"] {
            for rights in ["FR", "GR", "FA", "GA", "0x1"] {
                for flags in ["", "ID"] {
                    let sddl = format!("D:(A;;FA;;;{user})(A;{flags};{rights};;;{group})");
                    set_dacl(&private, &sddl, true);
                    let err = ClientKeyPair::load(&private, Some(b"windows-acl-test"))
                        .err()
                        .unwrap_or_else(|| panic!("{sddl} was loaded"));
                    assert!(matches!(err, CoreError::KeyPermission(_)), "{sddl}: {err}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_only_or_inherit_only_grants_to_broad_groups_are_not_reads() {
        let dir = temp_dir("narrow");
        let (_kp, private) = saved_key(&dir);
        let user = current_user_sid_string().unwrap();
        for sddl in [
            format!("D:(A;;FA;;;{user})(A;;FW;;;WD)"),
            format!("D:(A;;FA;;;{user})(A;IO;FR;;;BU)"),
            format!("D:(A;;FA;;;{user})(D;;FR;;;AU)"),
        ] {
            set_dacl(&private, &sddl, true);
            check_not_shared(&private).unwrap_or_else(|e| panic!("{sddl}: {e}"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reference_client_file_with_inherited_owner_system_admin_entries_loads() {
        let dir = temp_dir("inherited");
        let kp = ClientKeyPair::generate(2048).unwrap();
        let pem = kp.private_pem(None).unwrap();
        let private = dir.join("reference.pem");
        // Written as another tool would: plain file creation, then the ACL a user profile
        // folder passes on (inherited owner, SYSTEM, Administrators).
        std::fs::write(&private, pem.as_slice()).unwrap();
        let user = current_user_sid_string().unwrap();
        set_dacl(
            &private,
            &format!("D:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;FA;;;{user})"),
            false,
        );
        let again = ClientKeyPair::load(&private, None).unwrap();
        assert_eq!(again.fingerprint(), kp.fingerprint());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
