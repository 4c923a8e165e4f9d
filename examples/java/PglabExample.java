// Drive a lab through pglab's API with nothing but Java 17's standard
// library (java.net.http.HttpClient; a small JSON reader is below).
//
// Creates (or replaces) a lab from a folder (lab.yaml and the files it
// names), adds participants from a CSV file, waits for the apply, hands in
// a pg_dump file as the first participant (with the initial password from
// the credentials list), waits for its restore and the next scoring round,
// and prints the scores.
//
//   PGLAB_URL=http://127.0.0.1:8080 PGLAB_TOKEN=pglab_... \
//       java PglabExample.java LAB_FOLDER PARTICIPANTS.csv DUMP_FILE
//
// The token needs scope `admin` (it creates a lab). The last line printed
// is `SCORES {"username": points, ...}`.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Predicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class PglabExample {
    static final String URL = System.getenv().getOrDefault("PGLAB_URL", "http://127.0.0.1:8080").replaceAll("/+$", "");
    static final String TOKEN = System.getenv("PGLAB_TOKEN");
    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** An answer: its JSON and its Location header. */
    record Answer(Object json, String location) {}

    /** An answer of status 400 or more, with pglab's problem document. */
    static class ApiError extends RuntimeException {
        ApiError(int status, Map<String, Object> problem) {
            super(status + " " + problem.get("code") + ": " + problem.get("message"));
        }
    }

    static Answer call(String method, String path, Object body, String auth, byte[] raw) throws Exception {
        String url = path.startsWith("http") ? path : URL + path;
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url))
            .timeout(Duration.ofSeconds(60))
            .header("Authorization", auth != null ? auth : "Bearer " + TOKEN)
            .header("Accept", "application/json");
        if (body != null) {
            b.header("Content-Type", "application/json").method(method, HttpRequest.BodyPublishers.ofString(Json.write(body)));
        } else if (raw != null) {
            b.header("Content-Type", "application/octet-stream").method(method, HttpRequest.BodyPublishers.ofByteArray(raw));
        } else {
            b.method(method, HttpRequest.BodyPublishers.noBody());
        }
        for (int attempt = 0; attempt < 10; attempt++) {
            HttpResponse<String> r = HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
            if (r.statusCode() == 429) { // rate limited: wait as told, then again
                Thread.sleep(1000L * Long.parseLong(r.headers().firstValue("Retry-After").orElse("1")));
                continue;
            }
            Object json = r.body().isEmpty() ? null : Json.read(r.body());
            if (r.statusCode() >= 400) {
                throw new ApiError(r.statusCode(), json instanceof Map<?, ?> ? map(json) : Map.of("message", r.body()));
            }
            return new Answer(json, r.headers().firstValue("Location").orElse(null));
        }
        throw new IllegalStateException(method + " " + path + ": still rate limited");
    }

    /** Polls `path` until `done` holds for the answer; the last answer. */
    static Map<String, Object> waitFor(String path, Predicate<Map<String, Object>> done, String what, String auth) throws Exception {
        Instant deadline = Instant.now().plusSeconds(300);
        while (true) {
            Map<String, Object> answer = map(call("GET", path, null, auth, null).json());
            if (done.test(answer)) return answer;
            if (Instant.now().isAfter(deadline)) throw new IllegalStateException(what + " did not end: " + answer);
            Thread.sleep(500);
        }
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> map(Object o) { return (Map<String, Object>) o; }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object o) { return (List<Object>) o; }

    static boolean ended(Map<String, Object> j) {
        return "succeeded".equals(j.get("status")) || "failed".equals(j.get("status"));
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3 || TOKEN == null) {
            System.err.println("usage: PGLAB_URL=... PGLAB_TOKEN=... java PglabExample.java LAB_FOLDER PARTICIPANTS.csv DUMP_FILE");
            System.exit(2);
        }
        try {
            run(Path.of(args[0]), Path.of(args[1]), Path.of(args[2]));
        } catch (ApiError e) {
            System.err.println("pglab refused: " + e.getMessage());
            System.exit(1);
        }
    }

    static void run(Path folder, Path participantsCsv, Path dumpFile) throws Exception {
        String yaml = Files.readString(folder.resolve("lab.yaml"));
        Matcher m = Pattern.compile("^id:\\s*['\"]?([A-Za-z0-9_-]+)", Pattern.MULTILINE).matcher(yaml);
        if (!m.find()) throw new IllegalArgumentException("lab.yaml has no id");
        String lab = m.group(1);
        Map<String, Object> files = new TreeMap<>();
        try (var entries = Files.list(folder)) {
            for (Path p : entries.sorted().toList()) {
                String name = p.getFileName().toString();
                if (!name.equals("lab.yaml") && Files.isRegularFile(p)) files.put(name, Files.readString(p));
            }
        }
        Map<String, Object> upload = new LinkedHashMap<>();
        upload.put("yaml", yaml);
        upload.put("files", files);

        // 1. The lab: checked, then stored.
        Map<String, Object> checked = map(call("POST", "/api/v1/labs/check", upload, null, null).json());
        System.out.println("lab " + checked.get("id") + ": " + checked.get("tasks") + " tasks, " + checked.get("max_points") + " points");
        Answer stored = call("PUT", "/api/v1/labs/" + lab, upload, null, null);
        System.out.println("stored at " + stored.location());

        // 2. Participants: planned, applied as a job, followed to its end.
        Map<String, Object> change = Map.of("csv", Files.readString(participantsCsv));
        Map<String, Object> plan = map(call("POST", "/api/v1/labs/" + lab + "/participants/plan", change, null, null).json());
        for (Object c : list(plan.get("changes"))) System.out.println("plan: " + c);
        Answer applying = call("POST", "/api/v1/labs/" + lab + "/participants/apply", change, null, null);
        Map<String, Object> job = waitFor(applying.location(), PglabExample::ended, "the apply", null);
        if (!"succeeded".equals(job.get("status"))) throw new IllegalStateException("the apply failed: " + job.get("error"));
        System.out.println("apply: " + job.get("status") + " (" + job.get("done") + "/" + job.get("total") + ")");

        // 3. The first participant's initial password.
        Map<String, Object> credentials = map(call("GET", "/api/v1/labs/" + lab + "/credentials?limit=1", null, null, null).json());
        Map<String, Object> student = map(list(credentials.get("items")).get(0));
        String basic = "Basic " + Base64.getEncoder().encodeToString(
            (student.get("username") + ":" + student.get("password")).getBytes(StandardCharsets.UTF_8));

        // 4. A hand-in as that participant, followed until restored.
        Answer handin = call("POST", "/api/v1/labs/" + lab + "/submissions", null, basic, Files.readAllBytes(dumpFile));
        Map<String, Object> h = map(handin.json());
        System.out.println("hand-in " + h.get("id") + ": " + h.get("format") + ", " + h.get("size") + " bytes");
        Map<String, Object> sub = waitFor(handin.location(), PglabExample::ended, "the restore", basic);
        if (!"succeeded".equals(sub.get("status"))) throw new IllegalStateException("the restore failed: " + sub.get("errors"));

        // 5. Scores from a round that began after the restore.
        Instant restored = Instant.parse((String) sub.get("finished_at"));
        Map<String, Object> scores = waitFor("/api/v1/labs/" + lab + "/scores?limit=1000",
            s -> s.get("checked_at") != null && Instant.parse((String) s.get("checked_at")).isAfter(restored),
            "a scoring round", null);
        Map<String, Object> points = new TreeMap<>();
        for (Object o : list(scores.get("items"))) {
            Map<String, Object> p = map(o);
            points.put((String) p.get("username"), p.get("points"));
            List<Object> passed = new ArrayList<>();
            if (p.get("tasks") != null) {
                for (Object t : list(p.get("tasks"))) if (Boolean.TRUE.equals(map(t).get("passed"))) passed.add(map(t).get("task"));
            }
            System.out.println(p.get("username") + ": " + p.get("points") + "/" + scores.get("max_points") + " " + passed);
        }
        System.out.println("SCORES " + Json.write(points));
    }

    /** Just enough JSON: objects, arrays, strings, numbers, booleans, null. */
    static final class Json {
        private final String s;
        private int i;

        private Json(String s) { this.s = s; }

        static Object read(String text) {
            Json j = new Json(text);
            Object v = j.value();
            j.space();
            if (j.i != text.length()) throw new IllegalArgumentException("trailing text at " + j.i);
            return v;
        }

        private void space() { while (i < s.length() && Character.isWhitespace(s.charAt(i))) i++; }

        private Object value() {
            space();
            char c = s.charAt(i);
            if (c == '{') {
                Map<String, Object> m = new LinkedHashMap<>();
                i++;
                space();
                if (s.charAt(i) == '}') { i++; return m; }
                while (true) {
                    space();
                    String k = string();
                    space();
                    expect(':');
                    m.put(k, value());
                    space();
                    if (s.charAt(i) == ',') { i++; continue; }
                    expect('}');
                    return m;
                }
            }
            if (c == '[') {
                List<Object> l = new ArrayList<>();
                i++;
                space();
                if (s.charAt(i) == ']') { i++; return l; }
                while (true) {
                    l.add(value());
                    space();
                    if (s.charAt(i) == ',') { i++; continue; }
                    expect(']');
                    return l;
                }
            }
            if (c == '"') return string();
            if (s.startsWith("true", i)) { i += 4; return Boolean.TRUE; }
            if (s.startsWith("false", i)) { i += 5; return Boolean.FALSE; }
            if (s.startsWith("null", i)) { i += 4; return null; }
            int start = i;
            while (i < s.length() && "+-0123456789.eE".indexOf(s.charAt(i)) >= 0) i++;
            String n = s.substring(start, i);
            if (n.isEmpty()) throw new IllegalArgumentException("unexpected " + c + " at " + start);
            return n.contains(".") || n.contains("e") || n.contains("E") ? (Object) Double.parseDouble(n) : (Object) Long.parseLong(n);
        }

        private void expect(char c) {
            if (s.charAt(i) != c) throw new IllegalArgumentException("expected " + c + " at " + i);
            i++;
        }

        private String string() {
            expect('"');
            StringBuilder b = new StringBuilder();
            while (true) {
                char c = s.charAt(i++);
                if (c == '"') return b.toString();
                if (c != '\\') { b.append(c); continue; }
                char e = s.charAt(i++);
                switch (e) {
                    case 'n' -> b.append('\n');
                    case 't' -> b.append('\t');
                    case 'r' -> b.append('\r');
                    case 'b' -> b.append('\b');
                    case 'f' -> b.append('\f');
                    case 'u' -> { b.append((char) Integer.parseInt(s.substring(i, i + 4), 16)); i += 4; }
                    default -> b.append(e);
                }
            }
        }

        static String write(Object v) {
            if (v == null) return "null";
            if (v instanceof String str) {
                StringBuilder b = new StringBuilder("\"");
                for (char c : str.toCharArray()) {
                    switch (c) {
                        case '"' -> b.append("\\\"");
                        case '\\' -> b.append("\\\\");
                        case '\n' -> b.append("\\n");
                        case '\r' -> b.append("\\r");
                        case '\t' -> b.append("\\t");
                        default -> { if (c < 0x20) b.append(String.format("\\u%04x", (int) c)); else b.append(c); }
                    }
                }
                return b.append('"').toString();
            }
            if (v instanceof Map<?, ?> m) {
                StringBuilder b = new StringBuilder("{");
                for (var e : m.entrySet()) {
                    if (b.length() > 1) b.append(", ");
                    b.append(write(String.valueOf(e.getKey()))).append(": ").append(write(e.getValue()));
                }
                return b.append('}').toString();
            }
            if (v instanceof List<?> l) {
                StringBuilder b = new StringBuilder("[");
                for (Object o : l) {
                    if (b.length() > 1) b.append(", ");
                    b.append(write(o));
                }
                return b.append(']').toString();
            }
            return String.valueOf(v);
        }
    }
}
