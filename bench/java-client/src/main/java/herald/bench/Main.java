package herald.bench;

import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.camunda.bpm.client.ExternalTaskClient;

/**
 * Completes send-proposal tasks of one lane with a handler that does nothing, tuned as the
 * client's documentation allows (maxTasks, long polling, no back-off), and prints
 * "java_client_tasks_per_s <rate>".
 *
 * Usage: Main <engine-rest url> <tasks expected> <heraldLane>
 */
public final class Main {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        int expected = Integer.parseInt(args[1]);
        String lane = args[2];
        CountDownLatch done = new CountDownLatch(expected);
        ExternalTaskClient client = ExternalTaskClient.create()
                .baseUrl(url)
                .workerId("java-client-bench")
                .maxTasks(100)
                .asyncResponseTimeout(10_000)
                .disableBackoffStrategy()
                .build();
        long started = System.nanoTime();
        client.subscribe("send-proposal")
                .lockDuration(60_000)
                .processVariableEquals("heraldLane", lane)
                .handler((task, service) -> {
                    service.complete(task);
                    done.countDown();
                })
                .open();
        boolean all = done.await(10, TimeUnit.MINUTES);
        double seconds = (System.nanoTime() - started) / 1e9;
        client.stop();
        if (!all) {
            System.err.println("java client: only " + (expected - done.getCount()) + " of " + expected + " tasks");
            System.exit(1);
        }
        System.out.println("java_client_tasks_per_s " + (expected / seconds));
        System.exit(0);
    }
}
