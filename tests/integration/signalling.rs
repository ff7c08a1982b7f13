//! Video signalling through the gateway: real WebRTC peers (webrtc-rs) negotiating
//! through the service over mTLS with real tokens, real coturn, refusals, validation,
//! reconnection, two replicas on PostgreSQL, and waiting-room presence in scheduling.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use telehealth_kit::config::SignallingSettings;
use telehealth_kit::{
    Part,
    serve::{RoutesFuture, ServiceContext, ServiceDefinition},
};
use telehealth_proto::v1::{
    self as pb, signal_request::Message as In, signal_response::Event as Out,
    signalling_service_client::SignallingServiceClient,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status, Streaming, transport::Channel};
use webrtc::{
    api::{APIBuilder, setting_engine::SettingEngine},
    data_channel::{RTCDataChannel, data_channel_message::DataChannelMessage},
    ice::{mdns::MulticastDnsMode, network_type::NetworkType},
    ice_transport::{
        ice_candidate::RTCIceCandidateInit, ice_connection_state::RTCIceConnectionState,
        ice_server::RTCIceServer,
    },
    peer_connection::{
        RTCPeerConnection, configuration::RTCConfiguration,
        policy::ice_transport_policy::RTCIceTransportPolicy,
        sdp::session_description::RTCSessionDescription,
    },
};

use telehealth_kit::record::timestamp as ts;
use telehealth_testkit::suite::{Backend, Person, Signalling, Suite, backends};

const CENTRE: &str = "cds-bourganeuf";

// ---- clients ---------------------------------------------------------------------------------

/// The signalling service at `address`, called directly over internal mTLS as scheduling.
async fn as_scheduling(suite: &Suite, address: SocketAddr) -> SignallingServiceClient<Channel> {
    SignallingServiceClient::new(suite.internal_channel(Part::Scheduling, address).await)
}

fn signalling_address(suite: &Suite) -> SocketAddr {
    suite.running.as_ref().expect("running").services[&Part::Signalling]
}

fn doctor() -> Person {
    Person::doctor("dr-martin", CENTRE)
}

fn patient() -> Person {
    Person::patient("pat-7f3a", CENTRE)
}

/// Opens the room of a (made-up) appointment starting `starts_in` from now, as scheduling
/// does; returns (appointment id, room id).
async fn open_room(
    suite: &Suite,
    signalling: SocketAddr,
    people: &[(&Person, pb::ParticipantRole)],
    starts_in: jiff::SignedDuration,
) -> (String, String) {
    let appointment_id = uuid::Uuid::new_v4().to_string();
    let start = jiff::Timestamp::now() + starts_in;
    let response = as_scheduling(suite, signalling)
        .await
        .open_room(pb::OpenRoomRequest {
            appointment_id: appointment_id.clone(),
            org_id: CENTRE.into(),
            participants: people
                .iter()
                .map(|(person, role)| pb::RoomParticipant {
                    subject: person.subject.into(),
                    role: *role as i32,
                })
                .collect(),
            scheduled_time: Some(pb::TimeRange {
                start_time: Some(ts(start)),
                end_time: Some(ts(start + jiff::SignedDuration::from_mins(30))),
            }),
        })
        .await
        .expect("room opened")
        .into_inner();
    assert!(response.created);
    (appointment_id, response.room_id)
}

async fn doctor_and_patient_room(suite: &Suite, signalling: SocketAddr) -> (String, String) {
    open_room(
        suite,
        signalling,
        &[
            (&doctor(), pb::ParticipantRole::Doctor),
            (&patient(), pb::ParticipantRole::Patient),
        ],
        jiff::SignedDuration::from_mins(5),
    )
    .await
}

/// One open `Signal` stream.
struct Stream {
    sender: mpsc::Sender<pb::SignalRequest>,
    events: Streaming<pb::SignalResponse>,
    sequence: u64,
}

impl Stream {
    async fn open(client: &mut Signalling) -> Result<Stream, Status> {
        let (sender, receiver) = mpsc::channel(64);
        let events = client
            .signal(ReceiverStream::new(receiver))
            .await?
            .into_inner();
        Ok(Stream {
            sender,
            events,
            sequence: 0,
        })
    }

    async fn send(&mut self, message: In) {
        self.sequence += 1;
        self.sender
            .send(pb::SignalRequest {
                client_sequence: self.sequence,
                message: Some(message),
            })
            .await
            .expect("the stream accepts messages");
    }

    async fn join(&mut self, room_id: &str) {
        self.send(In::Join(pb::Join {
            room_id: room_id.into(),
            client_platform: "integration test".into(),
        }))
        .await;
    }

    /// The next event, or the status the stream ended with.
    async fn next(&mut self) -> Result<Option<Out>, Status> {
        match tokio::time::timeout(Duration::from_secs(10), self.events.message()).await {
            Ok(Ok(Some(response))) => Ok(response.event),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("no event within 10 s"),
        }
    }

    async fn event(&mut self) -> Out {
        loop {
            match self.next().await {
                Ok(Some(Out::KeepAliveAck(_))) => continue,
                Ok(Some(event)) => return event,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Joins and returns `joined`, or the status the join was refused with.
    async fn try_join(&mut self, room_id: &str) -> Result<pb::Joined, Status> {
        self.join(room_id).await;
        match self.next().await {
            Ok(Some(Out::Joined(joined))) => Ok(joined),
            Ok(other) => panic!("expected joined or a refusal, got {other:?}"),
            Err(status) => Err(status),
        }
    }

    /// The status the stream ends with (after skipping any events).
    async fn ending(&mut self) -> Status {
        loop {
            match self.next().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Status::ok(""),
                Err(status) => return status,
            }
        }
    }

    /// Asserts that nothing arrives for a short while.
    async fn assert_quiet(&mut self, what: &str) {
        if let Ok(received) =
            tokio::time::timeout(Duration::from_millis(300), self.events.message()).await
        {
            panic!("{what}: expected nothing, got {received:?}");
        }
    }
}

// ---- custom signalling instances -------------------------------------------------------------

/// Settings of signalling instances started by tests, by data directory: the kit's
/// configuration has no signalling section yet, so a test's instance picks its settings here.
static CUSTOM_SETTINGS: Mutex<Vec<(PathBuf, SignallingSettings)>> = Mutex::new(Vec::new());

fn custom_routes(context: ServiceContext) -> RoutesFuture {
    let settings = CUSTOM_SETTINGS
        .lock()
        .expect("settings lock")
        .iter()
        .rev()
        .find(|(dir, _)| *dir == context.settings.data_dir)
        .map(|(_, settings)| settings.clone())
        .unwrap_or_default();
    telehealth_signalling::routes_with(context, settings)
}

/// Starts a signalling instance of `suite` with `settings` and a gateway in front of it only;
/// returns (gateway, instance) addresses and what stops them.
async fn signalling_with(
    suite: &Suite,
    settings: SignallingSettings,
) -> (SocketAddr, SocketAddr, Vec<CancellationToken>) {
    CUSTOM_SETTINGS
        .lock()
        .expect("settings lock")
        .push((suite.settings.data_dir.clone(), settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let run_settings = Arc::new(suite.settings.clone());
    let token = stop.clone();
    tokio::spawn(async move {
        let definition = ServiceDefinition {
            routes: custom_routes,
            ..telehealth_signalling::definition()
        };
        telehealth_kit::serve::run_service(
            &definition,
            run_settings,
            listener,
            token,
            telehealth_kit::metrics::Metrics::local(),
        )
        .await
    });
    let tls =
        telehealth_kit::tls::client_tls(&suite.settings.internal_tls(Part::Gateway)).expect("tls");
    let mut healthy = false;
    for _ in 0..200 {
        if telehealth::suite::health_of(address, &tls, Part::Signalling).await {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        healthy,
        "the custom signalling instance did not become healthy"
    );
    let (gateway, stop_gateway) = suite.extra_gateway(Part::Signalling, &[address]).await;
    (gateway, address, vec![stop, stop_gateway])
}

// ---- WebRTC peers ----------------------------------------------------------------------------

/// A webrtc-rs peer whose signalling goes through a `Signal` stream.
struct RtcPeer {
    pc: Arc<RTCPeerConnection>,
    /// ICE connection states as they change.
    states: tokio::sync::watch::Receiver<RTCIceConnectionState>,
    /// Data-channel messages received.
    messages: mpsc::UnboundedReceiver<String>,
    message_sender: mpsc::UnboundedSender<String>,
    /// What this peer says when a data channel opens.
    hello: String,
    /// Local candidates to trickle (None: gathering complete).
    candidates: mpsc::UnboundedReceiver<Option<RTCIceCandidateInit>>,
    /// The candidates this peer trickled through signalling.
    sent: Vec<String>,
}

fn ice_servers_of(joined: &pb::Joined) -> Vec<RTCIceServer> {
    joined
        .ice_servers
        .as_ref()
        .map(|set| {
            set.servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `hello` once the channel opens and forwards what it receives.
fn wire_channel(
    channel: &Arc<RTCDataChannel>,
    hello: String,
    received: mpsc::UnboundedSender<String>,
) {
    let opened = channel.clone();
    channel.on_open(Box::new(move || {
        Box::pin(async move {
            opened.send_text(hello).await.expect("data channel send");
        })
    }));
    channel.on_message(Box::new(move |message: DataChannelMessage| {
        let received = received.clone();
        Box::pin(async move {
            let _ = received.send(String::from_utf8_lossy(&message.data).into_owned());
        })
    }));
}

async fn rtc_peer(ice_servers: Vec<RTCIceServer>, relay_only: bool, hello: &str) -> RtcPeer {
    let mut engine = SettingEngine::default();
    // Loopback only: the test never sends a packet off this machine.
    engine.set_include_loopback_candidate(true);
    engine.set_ip_filter(Box::new(|ip| ip.is_loopback() && ip.is_ipv4()));
    engine.set_network_types(vec![NetworkType::Udp4]);
    engine.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    let api = APIBuilder::new().with_setting_engine(engine).build();
    let config = RTCConfiguration {
        ice_servers,
        ice_transport_policy: if relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        },
        ..Default::default()
    };
    let pc = Arc::new(
        api.new_peer_connection(config)
            .await
            .expect("peer connection"),
    );
    let (state_sender, states) = tokio::sync::watch::channel(RTCIceConnectionState::New);
    pc.on_ice_connection_state_change(Box::new(move |state| {
        let _ = state_sender.send(state);
        Box::pin(async {})
    }));
    let (candidate_sender, candidates) = mpsc::unbounded_channel();
    pc.on_ice_candidate(Box::new(move |candidate| {
        let init = candidate.map(|c| c.to_json().expect("candidate as JSON"));
        let _ = candidate_sender.send(init);
        Box::pin(async {})
    }));
    let (message_sender, messages) = mpsc::unbounded_channel();
    let answering = message_sender.clone();
    let answer_hello = hello.to_owned();
    pc.on_data_channel(Box::new(move |channel: Arc<RTCDataChannel>| {
        wire_channel(&channel, answer_hello.clone(), answering.clone());
        Box::pin(async {})
    }));
    RtcPeer {
        pc,
        states,
        messages,
        message_sender,
        hello: hello.to_owned(),
        candidates,
        sent: Vec::new(),
    }
}

/// Drives one peer's negotiation: relays its candidates to `peer_id` and applies what arrives
/// (offer → answer, answer, candidates buffered until the remote description is set).
async fn negotiate(
    mut rtc: RtcPeer,
    mut stream: Stream,
    peer_id: String,
    offerer: bool,
    patience: Duration,
) -> (RtcPeer, Stream) {
    let mut pending: Vec<RTCIceCandidateInit> = Vec::new();
    let mut remote_set = false;
    if offerer {
        let offer = rtc.pc.create_offer(None).await.expect("offer");
        rtc.pc
            .set_local_description(offer.clone())
            .await
            .expect("local offer");
        stream
            .send(In::Offer(pb::SdpOffer {
                to_participant_id: peer_id.clone(),
                sdp: offer.sdp,
            }))
            .await;
    }
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if *rtc.states.borrow() == RTCIceConnectionState::Connected && remote_set {
            return (rtc, stream);
        }
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return (rtc, stream),
            candidate = rtc.candidates.recv() => match candidate {
                Some(Some(c)) => {
                    rtc.sent.push(c.candidate.clone());
                    stream.send(In::IceCandidate(pb::IceCandidate {
                        to_participant_id: peer_id.clone(),
                        candidate: c.candidate,
                        sdp_mid: c.sdp_mid.unwrap_or_default(),
                        sdp_m_line_index: c.sdp_mline_index.map(u32::from),
                        username_fragment: c.username_fragment.unwrap_or_default(),
                    })).await;
                }
                Some(None) => {
                    stream.send(In::EndOfCandidates(pb::EndOfCandidates {
                        to_participant_id: peer_id.clone(),
                        username_fragment: String::new(),
                    })).await;
                }
                None => {}
            },
            _ = rtc.states.changed() => {}
            event = stream.events.message() => {
                let event = match event {
                    Ok(Some(response)) => response.event,
                    other => panic!("the signalling stream broke during negotiation: {other:?}"),
                };
                match event {
                    Some(Out::Offer(offer)) => {
                        rtc.pc.set_remote_description(RTCSessionDescription::offer(offer.sdp).expect("offer"))
                            .await.expect("remote offer");
                        remote_set = true;
                        let answer = rtc.pc.create_answer(None).await.expect("answer");
                        rtc.pc.set_local_description(answer.clone()).await.expect("local answer");
                        stream.send(In::Answer(pb::SdpAnswer {
                            to_participant_id: peer_id.clone(),
                            sdp: answer.sdp,
                        })).await;
                    }
                    Some(Out::Answer(answer)) => {
                        rtc.pc.set_remote_description(RTCSessionDescription::answer(answer.sdp).expect("answer"))
                            .await.expect("remote answer");
                        remote_set = true;
                    }
                    Some(Out::IceCandidate(c)) => pending.push(RTCIceCandidateInit {
                        candidate: c.candidate,
                        sdp_mid: Some(c.sdp_mid),
                        sdp_mline_index: c.sdp_m_line_index.and_then(|i| u16::try_from(i).ok()),
                        username_fragment: (!c.username_fragment.is_empty()).then_some(c.username_fragment),
                    }),
                    Some(Out::Error(error)) => panic!("signalling refused a message: {error:?}"),
                    _ => {}
                }
                if remote_set {
                    for candidate in pending.drain(..) {
                        rtc.pc.add_ice_candidate(candidate).await.expect("remote candidate");
                    }
                }
            }
        }
    }
}

/// The doctor (offerer, with a data channel) and the patient negotiate through their streams;
/// returns whether both reached ICE connected, and the peers.
async fn call(
    doctor_stream: Stream,
    doctor_joined: &pb::Joined,
    patient_stream: Stream,
    patient_joined: &pb::Joined,
    relay_only: bool,
    patience: Duration,
) -> (bool, RtcPeer, RtcPeer) {
    let doctor_rtc = rtc_peer(
        ice_servers_of(doctor_joined),
        relay_only,
        "bonjour du docteur",
    )
    .await;
    let patient_rtc = rtc_peer(
        ice_servers_of(patient_joined),
        relay_only,
        "bonjour du patient",
    )
    .await;
    let channel = doctor_rtc
        .pc
        .create_data_channel("consultation", None)
        .await
        .expect("data channel");
    wire_channel(
        &channel,
        doctor_rtc.hello.clone(),
        doctor_rtc.message_sender.clone(),
    );
    let doctor_side = tokio::spawn(negotiate(
        doctor_rtc,
        doctor_stream,
        patient_joined.participant_id.clone(),
        true,
        patience,
    ));
    let patient_side = tokio::spawn(negotiate(
        patient_rtc,
        patient_stream,
        doctor_joined.participant_id.clone(),
        false,
        patience,
    ));
    let (doctor_rtc, _doctor_stream) = doctor_side.await.expect("doctor side");
    let (patient_rtc, _patient_stream) = patient_side.await.expect("patient side");
    let connected = *doctor_rtc.states.borrow() == RTCIceConnectionState::Connected
        && *patient_rtc.states.borrow() == RTCIceConnectionState::Connected;
    (connected, doctor_rtc, patient_rtc)
}

async fn first_message(peer: &mut RtcPeer) -> String {
    tokio::time::timeout(Duration::from_secs(10), peer.messages.recv())
        .await
        .expect("a data-channel message within 10 s")
        .expect("the channel is open")
}

/// Both join the room through `gateway`; the doctor first, and learns the patient joined.
async fn doctor_and_patient_join(
    suite: &Suite,
    gateway: SocketAddr,
    room_id: &str,
) -> (Stream, pb::Joined, Stream, pb::Joined) {
    let mut doctor_stream = Stream::open(&mut suite.signalling_via(gateway, &doctor()).await)
        .await
        .expect("doctor's stream");
    let doctor_joined = doctor_stream.try_join(room_id).await.expect("doctor joins");
    let mut patient_stream = Stream::open(&mut suite.signalling_via(gateway, &patient()).await)
        .await
        .expect("patient's stream");
    let patient_joined = patient_stream
        .try_join(room_id)
        .await
        .expect("patient joins");
    assert_eq!(patient_joined.peers.len(), 1, "the doctor is already there");
    match doctor_stream.event().await {
        Out::PeerJoined(joined) => assert_eq!(
            joined.peer.map(|p| p.participant_id),
            Some(patient_joined.participant_id.clone())
        ),
        other => panic!("expected peer_joined, got {other:?}"),
    }
    (doctor_stream, doctor_joined, patient_stream, patient_joined)
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn two_webrtc_peers_negotiate_through_the_gateway_and_talk_over_a_data_channel() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let (_, room_id) = doctor_and_patient_room(&suite, signalling_address(&suite)).await;
        let (doctor_stream, doctor_joined, patient_stream, patient_joined) =
            doctor_and_patient_join(&suite, suite.gateway(), &room_id).await;
        let (connected, mut doctor_rtc, mut patient_rtc) = call(
            doctor_stream,
            &doctor_joined,
            patient_stream,
            &patient_joined,
            false,
            Duration::from_secs(20),
        )
        .await;
        assert!(connected, "both peers reach ICE connected on loopback");
        assert_eq!(first_message(&mut patient_rtc).await, "bonjour du docteur");
        assert_eq!(first_message(&mut doctor_rtc).await, "bonjour du patient");
        doctor_rtc.pc.close().await.expect("close");
        patient_rtc.pc.close().await.expect("close");
        suite.stop().await;
    }
}

/// A coturn on loopback with `use-auth-secret`; killed on drop.
struct Coturn {
    child: std::process::Child,
    port: u16,
}

impl Coturn {
    /// Starts `turnserver`, or `None` (with a message) when it is not installed outside CI.
    async fn start(secret: &str) -> Option<Coturn> {
        let binary = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            if std::env::var_os("CI").is_some() {
                panic!("coturn (`turnserver`) is required in CI: apt-get install coturn");
            }
            eprintln!(
                "SKIPPING the TURN test: `turnserver` is not installed (apt-get install coturn)"
            );
            return None;
        };
        // A free port can be taken again before coturn binds it (tests run in parallel): a
        // coturn that exits is started again on another port.
        for _attempt in 0..3 {
            let port = {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("free port");
                socket.local_addr().expect("address").port()
            };
            let child = std::process::Command::new(binary)
                .args([
                    "-n",
                    "--listening-ip=127.0.0.1",
                    "--relay-ip=127.0.0.1",
                    &format!("--listening-port={port}"),
                    "--use-auth-secret",
                    &format!("--static-auth-secret={secret}"),
                    "--realm=telehealth.test",
                    "--no-tls",
                    "--no-dtls",
                    "--allow-loopback-peers",
                    "--no-cli",
                    "--no-tcp-relay",
                    "--min-port=40000",
                    "--max-port=40999",
                    "--simple-log",
                    "--log-file=stdout",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("turnserver starts");
            // Owned at once, so it is killed (and reaped) on every path.
            let mut coturn = Coturn { child, port };
            // Ready when it accepts TCP on its listening port.
            for _ in 0..100 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Some(coturn);
                }
                if coturn.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("turnserver did not start listening (three ports tried)");
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay-only call through a coturn configured with `coturn_secret`, the service minting
/// with `minted_secret`; returns whether both peers connected.
async fn relay_only_call(
    suite: &Suite,
    coturn: &Coturn,
    minted_secret: &str,
    patience: Duration,
) -> bool {
    let settings = SignallingSettings {
        turn_urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
        turn_secrets: vec![minted_secret.into(), "an-older-secret".into()],
        ..SignallingSettings::default()
    };
    let (gateway, instance, stops) = signalling_with(suite, settings).await;
    let (_, room_id) = doctor_and_patient_room(suite, instance).await;
    let (doctor_stream, doctor_joined, patient_stream, patient_joined) =
        doctor_and_patient_join(suite, gateway, &room_id).await;
    let turn = ice_servers_of(&doctor_joined);
    assert_eq!(turn.len(), 1, "one TURN server, minted for the participant");
    assert!(
        turn[0]
            .username
            .ends_with(&format!(":{}", doctor_joined.participant_id)),
        "username is expiry:participant_id, got {}",
        turn[0].username
    );
    let (connected, mut doctor_rtc, mut patient_rtc) = call(
        doctor_stream,
        &doctor_joined,
        patient_stream,
        &patient_joined,
        true,
        patience,
    )
    .await;
    for candidate in doctor_rtc.sent.iter().chain(&patient_rtc.sent) {
        assert!(
            candidate.contains(" typ relay"),
            "relay-only peers trickle only relayed candidates: {candidate}"
        );
    }
    if connected {
        assert!(
            !doctor_rtc.sent.is_empty() && !patient_rtc.sent.is_empty(),
            "both peers got a relay address from coturn"
        );
        assert_eq!(first_message(&mut patient_rtc).await, "bonjour du docteur");
        assert_eq!(first_message(&mut doctor_rtc).await, "bonjour du patient");
    }
    let _ = doctor_rtc.pc.close().await;
    let _ = patient_rtc.pc.close().await;
    for stop in stops {
        stop.cancel();
    }
    connected
}

#[tokio::test]
async fn relay_only_peers_connect_through_a_real_coturn_with_minted_credentials_only() {
    let secret = format!("suite-secret-{}", uuid::Uuid::new_v4().simple());
    let Some(coturn) = Coturn::start(&secret).await else {
        return;
    };
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        assert!(
            relay_only_call(&suite, &coturn, &secret, Duration::from_secs(20)).await,
            "relay-only peers connect through coturn with the service's credentials"
        );
        assert!(
            !relay_only_call(&suite, &coturn, "a-wrong-secret", Duration::from_secs(8)).await,
            "credentials minted with another secret are refused by coturn"
        );
        suite.stop().await;
    }
    drop(coturn);
}

#[tokio::test]
async fn strangers_unknown_rooms_and_rooms_outside_their_window_are_refused() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let signalling = signalling_address(&suite);
        let (_, room_id) = doctor_and_patient_room(&suite, signalling).await;
        let (_, tomorrow_room) = open_room(
            &suite,
            signalling,
            &[(&doctor(), pb::ParticipantRole::Doctor)],
            jiff::SignedDuration::from_hours(24),
        )
        .await;
        let stranger = Person::patient("pat-other", CENTRE);
        let other_doctor = Person::doctor("dr-other", CENTRE);
        let cases = [
            (
                &stranger,
                room_id.clone(),
                Code::PermissionDenied,
                "a patient of another appointment",
            ),
            (
                &other_doctor,
                room_id.clone(),
                Code::PermissionDenied,
                "another doctor",
            ),
            (
                &doctor(),
                uuid::Uuid::new_v4().to_string(),
                Code::PermissionDenied,
                "an unknown room",
            ),
            (
                &doctor(),
                tomorrow_room,
                Code::FailedPrecondition,
                "tomorrow's room",
            ),
            (
                &doctor(),
                "not-a-uuid".to_owned(),
                Code::InvalidArgument,
                "a malformed room id",
            ),
        ];
        let mut denial_messages = Vec::new();
        for (person, room, code, case) in cases {
            let mut stream = Stream::open(&mut suite.signalling(person).await)
                .await
                .expect("stream opens");
            let status = stream.try_join(&room).await.expect_err(case);
            assert_eq!(status.code(), code, "{case}: {status:?}");
            if code == Code::PermissionDenied {
                denial_messages.push(status.message().to_owned());
            }
        }
        denial_messages.dedup();
        assert_eq!(
            denial_messages.len(),
            1,
            "an unknown room and a room one is not admitted to are indistinguishable"
        );

        // Roles the contract does not allow are stopped by the gateway; internal RPCs too.
        let specialist = Person::specialist("dr-derm", CENTRE);
        let refused = Stream::open(&mut suite.signalling(&specialist).await).await;
        let refused_code = match refused {
            Ok(mut stream) => stream.ending().await.code(),
            Err(status) => status.code(),
        };
        assert_eq!(refused_code, Code::PermissionDenied, "a specialist");
        let open = suite
            .signalling(&doctor())
            .await
            .open_room(pb::OpenRoomRequest::default())
            .await
            .expect_err("internal only");
        assert_eq!(open.code(), Code::PermissionDenied);
        let mut anonymous =
            SignallingServiceClient::new(suite.channel_to(suite.gateway(), &doctor()).await);
        let unauthenticated = anonymous
            .get_ice_servers(pb::GetIceServersRequest { room_id })
            .await
            .expect_err("no token");
        assert_eq!(unauthenticated.code(), Code::Unauthenticated);
        suite.stop().await;
    }
}

/// A minimal valid SDP offer (one data channel).
const OFFER: &str = "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:EsAwLgXjQrUaRnRa\r\na=ice-pwd:bPHsiNMPrMMPyYHwJZtmqdYDejBJmfGG\r\n\
a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5A\r\n\
a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n";

#[tokio::test]
async fn malformed_oversized_and_premature_messages_are_refused_and_never_relayed() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let (_, room_id) = doctor_and_patient_room(&suite, signalling_address(&suite)).await;
        let (mut doctor_stream, doctor_joined, mut patient_stream, _) =
            doctor_and_patient_join(&suite, suite.gateway(), &room_id).await;
        let to_doctor = doctor_joined.participant_id.clone();
        let huge = format!("{OFFER}{}", "a=x-pad:0123456789abcdef\r\n".repeat(4_000));
        let cases = [
            (
                In::Offer(pb::SdpOffer {
                    to_participant_id: to_doctor.clone(),
                    sdp: "v=0\r\nthis is not SDP\r\n".into(),
                }),
                pb::SignallingErrorCode::MalformedSdp,
                "malformed SDP",
            ),
            (
                In::Answer(pb::SdpAnswer {
                    to_participant_id: to_doctor.clone(),
                    sdp: OFFER.into(),
                }),
                pb::SignallingErrorCode::MalformedSdp,
                "an offer sent as an answer",
            ),
            (
                In::Offer(pb::SdpOffer {
                    to_participant_id: to_doctor.clone(),
                    sdp: huge,
                }),
                pb::SignallingErrorCode::MessageTooLarge,
                "an SDP over 64 KiB",
            ),
            (
                In::IceCandidate(pb::IceCandidate {
                    to_participant_id: to_doctor.clone(),
                    candidate: "candidate:garbage".into(),
                    ..Default::default()
                }),
                pb::SignallingErrorCode::MalformedCandidate,
                "a malformed candidate",
            ),
            (
                In::IceCandidate(pb::IceCandidate {
                    to_participant_id: uuid::Uuid::new_v4().to_string(),
                    candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
                    ..Default::default()
                }),
                pb::SignallingErrorCode::UnknownPeer,
                "a candidate for an unknown peer",
            ),
        ];
        for (message, code, case) in cases {
            patient_stream.send(message).await;
            let sequence = patient_stream.sequence;
            match patient_stream.event().await {
                Out::Error(error) => {
                    assert_eq!(error.code, code as i32, "{case}: {error:?}");
                    assert_eq!(error.client_sequence, sequence, "{case}");
                    assert!(
                        !error.message.is_empty(),
                        "{case}: a message for developers"
                    );
                }
                other => panic!("{case}: expected an error event, got {other:?}"),
            }
        }
        doctor_stream
            .assert_quiet("nothing refused reaches the doctor")
            .await;

        // A second stream of the patient that sends before joining.
        let mut early = Stream::open(&mut suite.signalling(&patient()).await)
            .await
            .expect("stream");
        early
            .send(In::Offer(pb::SdpOffer {
                to_participant_id: to_doctor.clone(),
                sdp: OFFER.into(),
            }))
            .await;
        match early.event().await {
            Out::Error(error) => assert_eq!(error.code, pb::SignallingErrorCode::NotJoined as i32),
            other => panic!("expected NOT_JOINED, got {other:?}"),
        }
        drop(early);
        doctor_stream
            .assert_quiet("a message before join is not relayed")
            .await;

        // The streams are unaffected: a valid offer still goes through, in order after nothing.
        patient_stream
            .send(In::Offer(pb::SdpOffer {
                to_participant_id: to_doctor,
                sdp: OFFER.into(),
            }))
            .await;
        match doctor_stream.event().await {
            Out::Offer(offer) => assert_eq!(offer.sdp, OFFER),
            other => panic!("expected the valid offer, got {other:?}"),
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn a_reconnection_replaces_the_old_stream_and_the_peers_are_told() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let (appointment_id, room_id) =
            doctor_and_patient_room(&suite, signalling_address(&suite)).await;
        let (mut doctor_stream, doctor_joined, mut old_stream, old_joined) =
            doctor_and_patient_join(&suite, suite.gateway(), &room_id).await;
        let mut new_stream = Stream::open(&mut suite.signalling(&patient()).await)
            .await
            .expect("stream");
        let new_joined = new_stream.try_join(&room_id).await.expect("rejoins");
        assert!(new_joined.replaced_previous_connection);
        assert_eq!(new_joined.participant_id, old_joined.participant_id);
        assert_ne!(new_joined.connection_id, old_joined.connection_id);
        assert_eq!(
            new_joined
                .peers
                .iter()
                .map(|p| &p.participant_id)
                .collect::<Vec<_>>(),
            vec![&doctor_joined.participant_id]
        );

        match old_stream.event().await {
            Out::Replaced(replaced) => {
                assert_eq!(replaced.new_connection_id, new_joined.connection_id)
            }
            other => panic!("expected replaced, got {other:?}"),
        }
        assert_eq!(old_stream.ending().await.code(), Code::Aborted);
        match doctor_stream.event().await {
            Out::PeerReplaced(replaced) => assert_eq!(
                replaced.peer.map(|p| p.connection_id),
                Some(new_joined.connection_id.clone())
            ),
            other => panic!("expected peer_replaced, got {other:?}"),
        }
        // The doctor's offer reaches the new stream.
        doctor_stream
            .send(In::Offer(pb::SdpOffer {
                to_participant_id: new_joined.participant_id.clone(),
                sdp: OFFER.into(),
            }))
            .await;
        assert!(matches!(new_stream.event().await, Out::Offer(_)));

        // The reconnection is in the teleconsultation record; leave ends with OK.
        let incidents = suite
            .signalling(&doctor())
            .await
            .list_technical_incidents(pb::ListTechnicalIncidentsRequest {
                appointment_id,
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("listed")
            .into_inner()
            .incidents;
        assert!(
            incidents
                .iter()
                .any(|i| i.kind == pb::IncidentKind::Reconnected as i32
                    && i.participant_subject == "pat-7f3a"),
            "{incidents:?}"
        );
        new_stream
            .send(In::Leave(pb::Leave {
                reason: "fin de consultation".into(),
            }))
            .await;
        assert_eq!(new_stream.ending().await.code(), Code::Ok);
        match doctor_stream.event().await {
            Out::PeerLeft(left) => assert_eq!(left.reason, "fin de consultation"),
            other => panic!("expected peer_left, got {other:?}"),
        }
        suite.stop().await;
    }
}

#[tokio::test]
async fn peers_on_two_signalling_instances_sharing_postgres_complete_the_offer_answer_exchange() {
    let Some(suite) = Suite::start(Backend::Postgres).await else {
        return;
    };
    let first = signalling_address(&suite);
    let (second, stop_second) = suite.extra_instance(Part::Signalling).await;
    let (second_gateway, stop_gateway) = suite.extra_gateway(Part::Signalling, &[second]).await;
    let (_, room_id) = doctor_and_patient_room(&suite, first).await;

    // The doctor through the suite's gateway (first instance), the patient through a gateway
    // in front of the second instance only.
    let mut doctor_stream = Stream::open(&mut suite.signalling(&doctor()).await)
        .await
        .expect("doctor's stream");
    let doctor_joined = doctor_stream
        .try_join(&room_id)
        .await
        .expect("doctor joins");
    let mut patient_stream =
        Stream::open(&mut suite.signalling_via(second_gateway, &patient()).await)
            .await
            .expect("patient's stream");
    let patient_joined = patient_stream
        .try_join(&room_id)
        .await
        .expect("patient joins");
    assert_eq!(
        patient_joined.peers.len(),
        1,
        "the doctor on the other instance is listed"
    );
    assert!(matches!(doctor_stream.event().await, Out::PeerJoined(_)));

    // A real exchange: webrtc-rs offer and answer, and trickled candidates, across instances.
    let (connected, doctor_rtc, patient_rtc) = call(
        doctor_stream,
        &doctor_joined,
        patient_stream,
        &patient_joined,
        false,
        Duration::from_secs(20),
    )
    .await;
    assert!(connected, "peers on two instances negotiate and connect");
    let _ = doctor_rtc.pc.close().await;
    let _ = patient_rtc.pc.close().await;
    stop_gateway.cancel();
    stop_second.cancel();
    suite.stop().await;
}

#[tokio::test]
async fn a_patient_joining_before_the_doctor_puts_the_appointment_in_the_waiting_room() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let doctor = doctor();
        let mut scheduling = suite.scheduling(&doctor).await;
        scheduling
            .set_weekly_availability(pb::SetWeeklyAvailabilityRequest {
                practitioner_subject: doctor.subject.into(),
                time_zone: "UTC".into(),
                weekly_ranges: (1..=7)
                    .map(|day| pb::WeeklyRange {
                        day,
                        start_local_time: "00:00".into(),
                        end_local_time: "24:00".into(),
                    })
                    .collect(),
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect("availability");
        // The next whole minute plus a few, so the booking is in the future.
        let now = jiff::Timestamp::now().as_second();
        let start = jiff::Timestamp::from_second((now / 60 + 3) * 60).expect("start");
        let appointment = scheduling
            .book_appointment(pb::BookAppointmentRequest {
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                doctor_subject: doctor.subject.into(),
                nurse_subject: String::new(),
                patient: Some(pb::PatientRef {
                    pseudonym: suite.consenting_patient(&doctor).await,
                }),
                patient_subject: patient().subject.into(),
                start_time: Some(ts(start)),
                duration_minutes: 30,
                reason: "suivi plaie".into(),
                hold_id: String::new(),
            })
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment");
        assert_eq!(appointment.status, pb::AppointmentStatus::Booked as i32);

        // Scheduling opens the room (as on check-in or start).
        let room_id = as_scheduling(&suite, signalling_address(&suite))
            .await
            .open_room(pb::OpenRoomRequest {
                appointment_id: appointment.appointment_id.clone(),
                org_id: CENTRE.into(),
                participants: vec![
                    pb::RoomParticipant {
                        subject: doctor.subject.into(),
                        role: pb::ParticipantRole::Doctor as i32,
                    },
                    pb::RoomParticipant {
                        subject: patient().subject.into(),
                        role: pb::ParticipantRole::Patient as i32,
                    },
                ],
                scheduled_time: Some(pb::TimeRange {
                    start_time: Some(ts(start)),
                    end_time: Some(ts(start + jiff::SignedDuration::from_mins(30))),
                }),
            })
            .await
            .expect("room")
            .into_inner()
            .room_id;

        let mut patient_stream = Stream::open(&mut suite.signalling(&patient()).await)
            .await
            .expect("stream");
        let joined = patient_stream.try_join(&room_id).await.expect("joins");
        assert!(joined.peers.is_empty(), "the doctor is not there yet");

        let mut status = 0;
        for _ in 0..100 {
            status = scheduling
                .get_appointment(pb::GetAppointmentRequest {
                    appointment_id: appointment.appointment_id.clone(),
                })
                .await
                .expect("read")
                .into_inner()
                .appointment
                .expect("appointment")
                .status;
            if status == pb::AppointmentStatus::Arrived as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            status,
            pb::AppointmentStatus::Arrived as i32,
            "the doctor sees the patient waiting"
        );
        suite.stop().await;
    }
}

#[tokio::test]
async fn incidents_reported_by_an_app_are_recorded_once_and_listed_for_the_doctor() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let (appointment_id, _) = doctor_and_patient_room(&suite, signalling_address(&suite)).await;
        let report = pb::IncidentReport {
            client_incident_id: uuid::Uuid::new_v4().to_string(),
            kind: pb::IncidentKind::ConnectionFailed as i32,
            occurred_at: Some(ts(jiff::Timestamp::now())),
            duration_seconds: 40,
            description: "impossible de se connecter en 4G".into(),
            network_type: pb::NetworkType::Cellular as i32,
            client_platform: "Android 14; telehealth-app 2.3.1".into(),
        };
        let mut patient_client = suite.signalling(&patient()).await;
        let first = patient_client
            .report_technical_incident(pb::ReportTechnicalIncidentRequest {
                appointment_id: appointment_id.clone(),
                report: Some(report.clone()),
            })
            .await
            .expect("recorded")
            .into_inner();
        let retry = patient_client
            .report_technical_incident(pb::ReportTechnicalIncidentRequest {
                appointment_id: appointment_id.clone(),
                report: Some(report),
            })
            .await
            .expect("retried")
            .into_inner();
        assert_eq!(first, retry, "a retry returns the recorded incident");
        let listed = suite
            .signalling(&doctor())
            .await
            .list_technical_incidents(pb::ListTechnicalIncidentsRequest {
                appointment_id: appointment_id.clone(),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(listed.incidents.len(), 1);
        assert_eq!(
            listed.incidents[0].source,
            pb::IncidentSource::ClientReported as i32
        );
        let stranger = suite
            .signalling(&Person::doctor("dr-other", CENTRE))
            .await
            .list_technical_incidents(pb::ListTechnicalIncidentsRequest {
                appointment_id,
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .expect_err("not his appointment");
        assert_eq!(stranger.code(), Code::NotFound);
        suite.stop().await;
    }
}

#[tokio::test]
async fn the_room_id_returned_by_start_teleconsultation_admits_the_appointments_participants() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            return;
        };
        let mut scheduling = suite.scheduling(&doctor()).await;
        scheduling
            .set_weekly_availability(telehealth_proto::v1::SetWeeklyAvailabilityRequest {
                practitioner_subject: doctor().subject.into(),
                time_zone: "UTC".into(),
                weekly_ranges: (1..=7)
                    .map(|day| telehealth_proto::v1::WeeklyRange {
                        day,
                        start_local_time: "00:00".into(),
                        end_local_time: "24:00".into(),
                    })
                    .collect(),
                buffer_minutes: 0,
                expected_version: 0,
            })
            .await
            .expect("availability");
        // A slot starting in 10 minutes, on a whole minute: inside the room's admission window.
        let now = jiff::Timestamp::now().as_second();
        let start = jiff::Timestamp::from_second(now - now % 60 + 600).expect("start");
        let registered = suite.consenting_patient(&doctor()).await;
        let appointment = scheduling
            .book_appointment(telehealth_proto::v1::BookAppointmentRequest {
                idempotency_key: "e2e".into(),
                doctor_subject: doctor().subject.into(),
                nurse_subject: String::new(),
                patient: Some(telehealth_proto::v1::PatientRef {
                    pseudonym: registered,
                }),
                patient_subject: patient().subject.into(),
                start_time: Some(ts(start)),
                duration_minutes: 30,
                reason: "suivi".into(),
                hold_id: String::new(),
            })
            .await
            .expect("booked")
            .into_inner()
            .appointment
            .expect("appointment");
        let started = scheduling
            .start_teleconsultation(telehealth_proto::v1::StartTeleconsultationRequest {
                appointment_id: appointment.appointment_id.clone(),
            })
            .await
            .expect("started")
            .into_inner();
        assert!(!started.room_id.is_empty());

        // Both participants are admitted to the room scheduling opened in signalling.
        let (_doctor, doctor_joined, _patient, _) =
            doctor_and_patient_join(&suite, suite.gateway(), &started.room_id).await;
        assert_eq!(doctor_joined.appointment_id, appointment.appointment_id);

        // A stranger is not.
        let stranger = Person::doctor("dr-other", CENTRE);
        let mut stream = Stream::open(&mut suite.signalling(&stranger).await)
            .await
            .expect("stream");
        assert!(
            stream.try_join(&started.room_id).await.is_err(),
            "not a participant"
        );
        suite.stop().await;
    }
}

/// A browser's session: `OpenSignal` with the join, its events, and `SendSignal` for the rest.
struct BrowserSession {
    events: Streaming<pb::SignalResponse>,
    inbox: String,
}

impl BrowserSession {
    async fn open(client: &mut Signalling, room_id: &str) -> BrowserSession {
        let response = client
            .open_signal(pb::SignalRequest {
                client_sequence: 1,
                message: Some(In::Join(pb::Join {
                    room_id: room_id.into(),
                    client_platform: "navigateur (test)".into(),
                })),
            })
            .await
            .expect("the browser's stream opens");
        let inbox = response
            .metadata()
            .get("x-telehealth-signal-inbox")
            .expect("the inbox header")
            .to_str()
            .expect("ascii")
            .to_owned();
        BrowserSession {
            events: response.into_inner(),
            inbox,
        }
    }

    /// A `SendSignal` of `message` to this session's inbox.
    fn send_request(&self, client_sequence: u64, message: In) -> pb::SendSignalRequest {
        pb::SendSignalRequest {
            inbox_id: self.inbox.clone(),
            message: Some(pb::SignalRequest {
                client_sequence,
                message: Some(message),
            }),
        }
    }

    async fn event(&mut self) -> Out {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.events.message()).await {
                Ok(Ok(Some(response))) => match response.event {
                    Some(Out::KeepAliveAck(_)) | None => continue,
                    Some(event) => return event,
                },
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }
}

fn candidate_to(participant: &str) -> In {
    In::IceCandidate(pb::IceCandidate {
        to_participant_id: participant.into(),
        candidate: "candidate:842163049 1 udp 1677729535 192.0.2.10 54321 typ srflx raddr 0.0.0.0 rport 0 generation 0".into(),
        sdp_mid: "0".into(),
        sdp_m_line_index: Some(0),
        username_fragment: String::new(),
    })
}

#[tokio::test]
async fn a_browser_signals_with_a_server_stream_and_unary_sends_also_through_another_instance() {
    for backend in backends().await {
        let Some(suite) = Suite::start(backend).await else {
            continue;
        };
        let (_, room_id) = doctor_and_patient_room(&suite, signalling_address(&suite)).await;
        let mut doctor_stream = Stream::open(&mut suite.signalling(&doctor()).await)
            .await
            .expect("doctor's stream");
        let doctor_joined = doctor_stream
            .try_join(&room_id)
            .await
            .expect("doctor joins");

        // The patient's browser: the join opens the stream, the rest goes by SendSignal.
        let mut patient_client = suite.signalling(&patient()).await;
        let mut browser = BrowserSession::open(&mut patient_client, &room_id).await;
        let Out::Joined(patient_joined) = browser.event().await else {
            panic!("joined first");
        };
        assert!(matches!(doctor_stream.event().await, Out::PeerJoined(_)));
        patient_client
            .send_signal(browser.send_request(2, candidate_to(&doctor_joined.participant_id)))
            .await
            .expect("accepted for delivery");
        let Out::IceCandidate(relayed) = doctor_stream.event().await else {
            panic!("the browser's candidate is relayed to the doctor");
        };
        assert_eq!(relayed.from_participant_id, patient_joined.participant_id);

        // An offer too large for one bus notification (spilled to the database on its way to
        // the session, and again on its way to the doctor) arrives whole.
        let large_offer = format!(
            "v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             c=IN IP4 0.0.0.0\r\na=ice-ufrag:EsAwLgXjQrUaRnRa\r\n\
             a=ice-pwd:bPHsiNMPrMMPyYHwJZtmqdYDejBJmfGG\r\na=setup:actpass\r\na=mid:0\r\n\
             a=sctp-port:5000\r\n{}",
            "a=x-pad:0123456789\r\n".repeat(600)
        );
        assert!(large_offer.len() > 10_000);
        patient_client
            .send_signal(browser.send_request(
                3,
                In::Offer(pb::SdpOffer {
                    to_participant_id: doctor_joined.participant_id.clone(),
                    sdp: large_offer.clone(),
                }),
            ))
            .await
            .expect("a large offer is accepted");
        match doctor_stream.event().await {
            Out::Offer(offer) => assert_eq!(offer.sdp, large_offer),
            other => panic!("the large offer, got {other:?}"),
        }

        // The doctor's answer arrives on the browser's stream.
        doctor_stream
            .send(candidate_to(&patient_joined.participant_id))
            .await;
        assert!(
            matches!(browser.event().await, Out::IceCandidate(_)),
            "relayed to the browser"
        );

        // A join goes with OpenSignal only; another person cannot use the patient's inbox.
        let join_again = patient_client
            .send_signal(browser.send_request(
                3,
                In::Join(pb::Join {
                    room_id: room_id.clone(),
                    client_platform: String::new(),
                }),
            ))
            .await
            .expect_err("join by SendSignal");
        assert_eq!(join_again.code(), tonic::Code::InvalidArgument);
        suite
            .signalling(&doctor())
            .await
            .send_signal(browser.send_request(1, candidate_to(&doctor_joined.participant_id)))
            .await
            .expect("answered as any send");
        doctor_stream
            .assert_quiet("a message put in another person's inbox")
            .await;

        // On PostgreSQL, a send that reaches another signalling instance (through a gateway in
        // front of it only) still reaches the session, through the event bus.
        if backend == Backend::Postgres {
            let (second, stop_second) = suite.extra_instance(Part::Signalling).await;
            let (second_gateway, stop_gateway) =
                suite.extra_gateway(Part::Signalling, &[second]).await;
            suite
                .signalling_via(second_gateway, &patient())
                .await
                .send_signal(browser.send_request(4, candidate_to(&doctor_joined.participant_id)))
                .await
                .expect("accepted by the other instance");
            assert!(
                matches!(doctor_stream.event().await, Out::IceCandidate(_)),
                "delivered across instances"
            );
            stop_gateway.cancel();
            stop_second.cancel();
        }
    }
}
