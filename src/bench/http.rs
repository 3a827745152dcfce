//! `coursegen bench http`: the read endpoints under load, beside the same
//! SQL sent straight through tokio-postgres in the same run.
//!
//! The projection tables are seeded with SQL (`generate_series`), spread
//! over `--users` users as a real tenant mix would be; each request is made
//! as the owner of what it reads, so the tenant filter is part of the cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rand::Rng;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::ScratchDatabase;
use crate::domain::CourseStatus;
use crate::ingress::http::{self as api, ApiState, Auth, HttpSettings};
use crate::projections::courses::queries::{
    CourseList, CourseOrder, COURSE_BY_ID, LESSONS_OF_COURSE,
};
use crate::projections::courses::LessonStatus;
use crate::store::EventStore;

/// Options of `bench http`.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Courses in the projection (4 lessons each).
    #[arg(long, default_value_t = 50_000)]
    pub courses: u32,
    /// Users the courses are spread over.
    #[arg(long, default_value_t = 500)]
    pub users: u32,
    /// Concurrent clients (HTTP connections, or raw query tasks).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Seconds each measurement runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Database connections of the API's pool and of the raw runs alike.
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
    /// HTTP worker threads (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
}

const SECRET: &str = "coursegen-bench-secret";
/// The seeded courses' statuses, in turn: half of them READY.
const SEED_STATUSES: [CourseStatus; 6] = [
    CourseStatus::Ready,
    CourseStatus::Ready,
    CourseStatus::Ready,
    CourseStatus::Generating,
    CourseStatus::Queued,
    CourseStatus::Failed,
];
const PER_PAGE: i64 = 20;

/// Which read is measured.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    List,
    Course,
}

/// Results of one measurement.
struct Stats {
    rate: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// The seeded data the clients draw from.
struct Seed {
    /// (user, one of their courses, pages of their list).
    courses: Vec<(Uuid, Uuid)>,
    pages: i64,
}

async fn seed(store: &EventStore, args: &HttpArgs) -> anyhow::Result<Seed> {
    let client = store.pool().get().await?;
    let users = i64::from(args.users.max(1));
    let courses = i64::from(args.courses.max(1));
    let start = Instant::now();
    client
        .execute(
            "INSERT INTO courses (id, user_id, request_id, title, description, slug, slug_base,
                                  slug_transaction_id, slug_position, topic,
                                  grade_level, language, status, total_lessons,
                                  lessons_generated, model, created_at, updated_at, generated_at)
             SELECT md5('course' || g)::uuid,
                    ('00000000-0000-4000-8000-' || lpad(to_hex(g % $2), 12, '0'))::uuid,
                    md5('request' || g)::uuid,
                    'Course ' || g || ': ' || (ARRAY['photosynthesis', 'volcanoes', 'algebra',
                        'medieval castles', 'the water cycle'])[1 + g % 5],
                    'A four-lesson course for grade ' || (1 + g % 12),
                    'course-' || g, 'course' || g, 1, g,
                    (ARRAY['photosynthesis', 'volcanoes', 'algebra', 'medieval castles',
                        'the water cycle'])[1 + g % 5],
                    'Grade ' || (1 + g % 12), 'en',
                    ($3::text[])[1 + g % 6],
                    4, 4, 'bench',
                    now() - make_interval(secs => g), now() - make_interval(secs => g), now()
             FROM generate_series(1, $1::bigint) AS g",
            &[&courses, &users, &SEED_STATUSES.as_slice()],
        )
        .await?;
    client
        .execute(
            "INSERT INTO lessons (course_id, lesson_number, title, concepts, objectives, status, generated_at)
             SELECT c.id, n, 'Lesson ' || n, ARRAY['a', 'b'], ARRAY['understand a'], $1::text, now()
             FROM courses c, generate_series(1, 4) AS n",
            &[&LessonStatus::Generated],
        )
        .await?;
    for sql in ["VACUUM ANALYZE courses", "VACUUM ANALYZE lessons"] {
        client.batch_execute(sql).await?;
    }
    let rows = client.query("SELECT user_id, id FROM courses", &[]).await?;
    println!(
        "seeded {courses} courses ({} lessons) over {users} users in {:.1} s",
        courses * 4,
        start.elapsed().as_secs_f64()
    );
    let per_user = (courses / users).max(1);
    Ok(Seed {
        courses: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        pages: ((per_user + PER_PAGE - 1) / PER_PAGE).max(1),
    })
}

fn token(user: Uuid) -> String {
    let claims = serde_json::json!({
        "sub": user,
        "exp": chrono::Utc::now().timestamp() + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token encodes")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs `concurrency` loops of `one` for `duration`, collecting latencies.
async fn measure<F, Fut>(concurrency: usize, duration: Duration, one: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let one = Arc::new(one);
    let start = Instant::now();
    let until = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let one = one.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut errors = 0u64;
                while Instant::now() < until {
                    let t = Instant::now();
                    if one().await {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("worker ran");
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    Stats {
        rate: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        errors,
    }
}

/// What the handler of `endpoint` sends, straight through tokio-postgres:
/// the read model's statements, prepared and pipelined as the handler does,
/// with the rows left undecoded.
async fn raw_query(
    store: &EventStore,
    endpoint: Endpoint,
    user: Uuid,
    course: Uuid,
    page: i64,
) -> bool {
    let run = async {
        let client = store.pool().get().await?;
        match endpoint {
            Endpoint::List => {
                // The query `GET /courses?page=N` makes for a non-admin caller.
                let list = CourseList {
                    user: Some(user),
                    status: None,
                    created_after: None,
                    search: None,
                    tag: None,
                    author: None,
                    language: None,
                    difficulty: None,
                    order: CourseOrder::NEWEST,
                    limit: PER_PAGE,
                    offset: (page - 1) * PER_PAGE,
                };
                let sql = list.sql();
                let (a, b) = futures::try_join!(
                    client.prepare_cached(&sql.page),
                    client.prepare_cached(&sql.count)
                )?;
                futures::try_join!(
                    client.query(&a, &sql.page_params),
                    client.query_one(&b, &sql.count_params)
                )?;
            }
            Endpoint::Course => {
                let (a, b) = futures::try_join!(
                    client.prepare_cached(COURSE_BY_ID),
                    client.prepare_cached(LESSONS_OF_COURSE)
                )?;
                let params: [&(dyn ToSql + Sync); 1] = [&course];
                futures::try_join!(client.query_opt(&a, &params), client.query(&b, &params))?;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    run.await.is_ok()
}

/// Runs the benchmark in `scratch`.
///
/// # Errors
/// Database errors, or an address that cannot be bound.
pub(crate) async fn run(scratch: &ScratchDatabase, args: &HttpArgs) -> anyhow::Result<()> {
    let store = scratch.store(args.pool);
    let seed = Arc::new(seed(&store, args).await?);
    let tokens: Arc<std::collections::HashMap<Uuid, String>> =
        Arc::new(seed.courses.iter().map(|(u, _)| (*u, token(*u))).collect());
    let settings = HttpSettings {
        http_addr: "127.0.0.1:0".parse().expect("valid address"),
        auth_jwt_secret: Some(SECRET.into()),
        http_workers: args.workers,
        ..HttpSettings::default()
    };
    // A pool of its own, as in `serve`: its connections are opened by the
    // HTTP workers that use them (the raw runs use `store`'s).
    let api_store = scratch.store(args.pool);
    let state = ApiState::new(api_store.clone(), Auth::new(Some(SECRET)));
    let (server, addr) = api::start(state, &settings)?;
    let handle = server.handle();
    actix_rt::spawn(server);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let base = format!("http://{addr}/api/v1");
    let duration = Duration::from_secs_f64(args.seconds);

    println!(
        "bench http: {} courses, {} users, {} clients, pool {}, {:.1} s per measurement",
        args.courses, args.users, args.concurrency, args.pool, args.seconds
    );
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "endpoint", "http req/s", "http p50", "http p99", "raw q/s", "raw p50", "raw p99", "ratio"
    );
    for endpoint in [Endpoint::List, Endpoint::Course] {
        let pick = {
            let seed = seed.clone();
            move || {
                let mut rng = rand::thread_rng();
                let (user, course) = seed.courses[rng.gen_range(0..seed.courses.len())];
                (user, course, rng.gen_range(1..=seed.pages))
            }
        };
        // Warm up both paths (connections, prepared statements, caches).
        let warm = Duration::from_secs_f64((args.seconds / 5.0).max(0.5));
        let http_one = {
            let (client, base, tokens, pick) =
                (client.clone(), base.clone(), tokens.clone(), pick.clone());
            move || {
                let (user, course, page) = pick();
                let url = match endpoint {
                    Endpoint::List => format!("{base}/courses?page={page}&per_page={PER_PAGE}"),
                    Endpoint::Course => format!("{base}/courses/{course}"),
                };
                let request = client.get(url).bearer_auth(&tokens[&user]).send();
                async move {
                    match request.await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            }
        };
        let raw_one = {
            let (store, pick) = (store.clone(), pick.clone());
            move || {
                let (user, course, page) = pick();
                let store = store.clone();
                async move { raw_query(&store, endpoint, user, course, page).await }
            }
        };
        let http_one = Arc::new(http_one);
        let raw_one = Arc::new(raw_one);
        let h = http_one.clone();
        measure(args.concurrency, warm, move || h()).await;
        let r = raw_one.clone();
        measure(args.concurrency, warm, move || r()).await;
        let h = http_one.clone();
        let http = measure(args.concurrency, duration, move || h()).await;
        let r = raw_one.clone();
        let raw = measure(args.concurrency, duration, move || r()).await;
        let name = match endpoint {
            Endpoint::List => "GET /courses?page=N",
            Endpoint::Course => "GET /courses/{id}",
        };
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1000.0);
        println!(
            "{:<22} {:>10.0} {:>9} {:>9} {:>10.0} {:>9} {:>9} {:>7.2}",
            name,
            http.rate,
            ms(http.p50),
            ms(http.p99),
            raw.rate,
            ms(raw.p50),
            ms(raw.p99),
            http.rate / raw.rate.max(1e-9)
        );
        if http.errors + raw.errors > 0 {
            println!("  errors: http {}, raw {}", http.errors, raw.errors);
        }
    }
    pages_beside_json(&store, &seed, &tokens, &client, addr, args).await?;
    handle.stop(true).await;
    api_store.pool().close();
    store.pool().close();
    Ok(())
}

/// Lessons given a body (lesson 1 of the first this many courses), for the
/// lesson rows.
const LESSON_BODIES: i64 = 2_000;

/// A lesson as a model writes one: headings, paragraphs, a list, code.
const LESSON_MARKDOWN: &str = "# Lesson 1: A first look\n\n## Introduction\n\nWelcome. This \
    lesson gives you a map of the topic: what it is, the words people use and where you meet \
    it. **Nothing** here assumes you have studied it before.\n\n- Explain it in your own words\n\
    - Use the basic vocabulary correctly\n- Spot it in everyday life\n\n## Worked example\n\n\
    Start from a simple case, describe it in plain words, and only then add detail.\n\n\
    ```python\ndef area(r):\n    return 3.14159 * r * r  # a circle\n```\n\n## Summary\n\n\
    Relate each idea to something you already know; a familiar anchor makes it easier to keep.\n";

/// Gives lesson 1 of the first [`LESSON_BODIES`] courses a body and a
/// three-question quiz; returns those courses with their owners.
async fn seed_lessons(store: &EventStore, seed: &Seed) -> anyhow::Result<Vec<(Uuid, Uuid)>> {
    let client = store.pool().get().await?;
    let body = LESSON_MARKDOWN.repeat(3);
    client
        .execute(
            "INSERT INTO lesson_bodies (course_id, lesson_number, content_md, content_json,
                                        sources, model, total_tokens, generated_at)
             SELECT id, 1, $1, '[]', '[{\"title\": \"A textbook\", \"url\": null}]', 'bench', 900, now()
             FROM courses ORDER BY id LIMIT $2",
            &[&body, &LESSON_BODIES],
        )
        .await?;
    client
        .execute(
            "INSERT INTO lesson_checks (course_id, lesson_number, question_number, question,
                                        options, answer_index, explanation)
             SELECT b.course_id, 1, q, 'Question ' || q || '?', '[\"A\", \"B\", \"C\"]', 1, 'B is right.'
             FROM lesson_bodies b, generate_series(1, 3) AS q",
            &[],
        )
        .await?;
    let rows = client
        .query(
            "SELECT c.user_id, c.id FROM courses c JOIN lesson_bodies b ON b.course_id = c.id",
            &[],
        )
        .await?;
    let owners: std::collections::HashSet<(Uuid, Uuid)> = seed.courses.iter().copied().collect();
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .filter(|pair| owners.contains(pair))
        .collect())
}

/// The web app's pages beside the JSON endpoints of the same data, on the
/// same server in the same run: `ratio` is the page's time per request
/// over the JSON's (the target is at most 2).
async fn pages_beside_json(
    store: &EventStore,
    seed: &Arc<Seed>,
    tokens: &Arc<std::collections::HashMap<Uuid, String>>,
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    args: &HttpArgs,
) -> anyhow::Result<()> {
    let lessons = Arc::new(seed_lessons(store, seed).await?);
    if lessons.is_empty() {
        anyhow::bail!("no lesson was seeded");
    }
    let duration = Duration::from_secs_f64(args.seconds);
    let warm = Duration::from_secs_f64((args.seconds / 5.0).max(0.5));
    println!();
    println!(
        "{:<28} {:>10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>7}",
        "web page (beside its JSON)",
        "page r/s",
        "page p50",
        "page p99",
        "json r/s",
        "json p50",
        "json p99",
        "ratio"
    );
    let base = format!("http://{addr}");
    for (name, lesson) in [
        ("GET / (library)", false),
        ("GET /courses/{id}/lessons/1", true),
    ] {
        let one = |json: bool| {
            let (client, base, tokens, seed, lessons) = (
                client.clone(),
                base.clone(),
                tokens.clone(),
                seed.clone(),
                lessons.clone(),
            );
            move || {
                let mut rng = rand::thread_rng();
                let (user, course) = if lesson {
                    lessons[rng.gen_range(0..lessons.len())]
                } else {
                    seed.courses[rng.gen_range(0..seed.courses.len())]
                };
                let page = rng.gen_range(1..=seed.pages);
                let path = match (lesson, json) {
                    (false, false) => format!("/?page={page}"),
                    (false, true) => format!("/api/v1/courses?page={page}&per_page={PER_PAGE}"),
                    (true, false) => format!("/courses/{course}/lessons/1"),
                    (true, true) => format!("/api/v1/courses/{course}/lessons/1"),
                };
                let token = &tokens[&user];
                let request = if json {
                    client.get(format!("{base}{path}")).bearer_auth(token)
                } else {
                    client.get(format!("{base}{path}")).header(
                        reqwest::header::COOKIE,
                        format!("{}={token}", crate::web::session::SESSION_COOKIE),
                    )
                }
                .send();
                async move {
                    match request.await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            }
        };
        let (page_one, json_one) = (Arc::new(one(false)), Arc::new(one(true)));
        for f in [page_one.clone(), json_one.clone()] {
            measure(args.concurrency, warm, move || f()).await;
        }
        let f = page_one.clone();
        let page = measure(args.concurrency, duration, move || f()).await;
        let f = json_one.clone();
        let json = measure(args.concurrency, duration, move || f()).await;
        let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1000.0);
        println!(
            "{:<28} {:>10.0} {:>9} {:>9} {:>10.0} {:>9} {:>9} {:>7.2}",
            name,
            page.rate,
            ms(page.p50),
            ms(page.p99),
            json.rate,
            ms(json.p50),
            ms(json.p99),
            json.rate / page.rate.max(1e-9)
        );
        if page.errors + json.errors > 0 {
            println!("  errors: page {}, json {}", page.errors, json.errors);
        }
    }
    println!("ratio: a page's time per request over its JSON endpoint's (target: at most 2)");
    Ok(())
}
