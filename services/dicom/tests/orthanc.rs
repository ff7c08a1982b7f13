//! C-STORE to a real PACS: an Orthanc started for the test on free ports, checked through its
//! REST API. And a PACS that does not answer is a retryable error.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{dermoscopy, jpeg, photo, tool};
use telehealth_dicom::{
    ImportLimits, PacsDestination, PhotoKind, SendError, c_store, import, uids, vl_photographic,
};
use telehealth_kit::testing::ports::free_port;

/// An Orthanc process, killed when dropped.
struct Orthanc {
    child: Child,
    dicom_port: u16,
    http_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Orthanc {
    fn start(binary: &Path) -> Orthanc {
        let dir = tempfile::tempdir().expect("temp dir");
        let (dicom_port, http_port) = (free_port(), free_port());
        let config = serde_json::json!({
            "Name": "telehealth-dicom-test",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "StorageCompression": false,
            "DicomServerEnabled": true,
            "DicomAet": "ORTHANC_TEST",
            "DicomPort": dicom_port,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowStore": true,
            "HttpServerEnabled": true,
            "HttpPort": http_port,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "JpegTransferSyntaxAccepted": true,
            "UnknownSopClassAccepted": false,
            "Plugins": [],
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).expect("writing Orthanc's configuration");
        let log = std::fs::File::create(dir.path().join("orthanc.log")).expect("Orthanc's log");
        let child = Command::new(binary)
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting Orthanc");
        let orthanc = Orthanc {
            child,
            dicom_port,
            http_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(http_port, "/system").map(|(status, _)| status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "Orthanc did not start within 60 s: {}",
                orthanc.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        orthanc
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("orthanc.log")).unwrap_or_default()
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) =
            http_get(self.http_port, path).unwrap_or_else(|| panic!("GET {path} failed"));
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    fn destination(&self) -> PacsDestination {
        PacsDestination {
            host: "127.0.0.1".into(),
            port: self.dicom_port,
            called_ae_title: "ORTHANC_TEST".into(),
            calling_ae_title: "TELEHEALTH".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A minimal HTTP/1.0 GET on localhost (enough for Orthanc's REST API): status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

/// From the (top-level, last) Pixel Data element to the end of the file.
fn pixel_data(file: &[u8]) -> &[u8] {
    let tag = [0xE0, 0x7F, 0x10, 0x00, b'O', b'B'];
    let at = file
        .windows(tag.len())
        .rposition(|w| w == tag)
        .expect("Pixel Data");
    &file[at..]
}

#[tokio::test]
async fn c_store_puts_the_photo_in_orthanc_with_its_patient_class_and_jpeg() {
    let Some(binary) = tool("Orthanc") else {
        return;
    };
    let orthanc = Orthanc::start(&binary);
    let image = jpeg(64, 48);
    for (case, kind, qualified) in [
        ("dermoscopy", dermoscopy(), true),
        ("wound", PhotoKind::Wound, false),
    ] {
        let file = vl_photographic(&photo(kind, qualified, &image)).expect("export");
        let outcome = c_store(&orthanc.destination(), &file)
            .await
            .unwrap_or_else(|e| panic!("{case}: C-STORE failed: {e}\n{}", orthanc.log()));
        assert_eq!(outcome.status, 0, "{case}");

        let instances = orthanc.json("/instances?expand");
        let instance = instances
            .as_array()
            .and_then(|all| {
                all.iter().find(|i| {
                    i["MainDicomTags"]["SOPInstanceUID"] == outcome.sop_instance_uid.as_str()
                })
            })
            .unwrap_or_else(|| panic!("{case}: instance not in Orthanc: {instances}"))
            .clone();
        let id = instance["ID"].as_str().expect("an instance id");
        let tags = orthanc.json(&format!("/instances/{id}/simplified-tags"));
        assert_eq!(tags["PatientID"], "PAT-0042", "{case}");
        assert_eq!(tags["PatientName"], "LEFÈVRE-ÉTIENNE^Zoé Hélène", "{case}");
        assert_eq!(
            tags["SOPClassUID"],
            uids::VL_PHOTOGRAPHIC_IMAGE_STORAGE,
            "{case}"
        );
        assert_eq!(tags["Modality"], "XC", "{case}");

        let (status, stored) =
            http_get(orthanc.http_port, &format!("/instances/{id}/file")).expect("GET file");
        assert_eq!(status, 200, "{case}");
        // Orthanc (DCMTK) writes its own file meta group and re-encodes sequences with explicit
        // lengths where ours are undefined; everything from Pixel Data on, the JPEG and its
        // encapsulation, is byte for byte what was sent, and the stored file imports as ours.
        assert!(
            pixel_data(&stored) == pixel_data(&file),
            "{case}: the stored pixel data differs from the one sent"
        );
        let ours = import(&file, &ImportLimits::default()).expect("our file imports");
        let theirs = import(&stored, &ImportLimits::default()).expect("Orthanc's file imports");
        assert_eq!(
            theirs, ours,
            "{case}: same image and attributes once stored"
        );
    }
    let patients = orthanc.json("/patients");
    assert_eq!(
        patients.as_array().map(Vec::len),
        Some(1),
        "one patient for both photos: {patients}"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_error() {
    let image = jpeg(16, 16);
    let file = vl_photographic(&photo(PhotoKind::Clinical, false, &image)).expect("export");
    let destination = PacsDestination {
        host: "127.0.0.1".into(),
        port: free_port(), // bound then released: nothing listens there
        called_ae_title: "NOBODY".into(),
        calling_ae_title: "TELEHEALTH".into(),
        timeout: Duration::from_secs(5),
    };
    let error = c_store(&destination, &file)
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, SendError::Network(_)), "{error:?}");
    assert!(error.is_retryable(), "{error}");
}
