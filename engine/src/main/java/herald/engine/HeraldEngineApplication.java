package herald.engine;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;

/**
 * Runs a Camunda 7 (or Operaton) process engine with its REST API and webapps.
 *
 * <p>Deliberately free of engine-specific imports: the starters' Spring Boot
 * auto-configuration builds the engine, so the same source compiles with the
 * Maven profiles {@code camunda} and {@code operaton}. Herald deploys its BPMN
 * itself through the REST API; nothing is deployed from the classpath.
 */
@SpringBootApplication
public class HeraldEngineApplication {

  public static void main(String[] args) {
    SpringApplication.run(HeraldEngineApplication.class, args);
  }
}
