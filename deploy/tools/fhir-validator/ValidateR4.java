// Validates FHIR R4 JSON resources (one file each, or NDJSON) against the base R4 profiles with
// the official HL7 validator engine (org.hl7.fhir.validation, driven through HAPI's
// FhirInstanceValidator), offline: the StructureDefinitions, value sets and code systems come
// from the hapi-fhir-validation-resources-r4 jar. Prints one line per issue of severity
// warning or worse ("ERROR <file>:<line> <location> <message>") and, last,
// "validated N resources: E errors, W warnings". Exit status 1 when there is an error.
import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public class ValidateR4 {
  public static void main(String[] args) throws Exception {
    FhirContext context = FhirContext.forR4();
    ValidationSupportChain chain = new ValidationSupportChain(
        new DefaultProfileValidationSupport(context),
        new InMemoryTerminologyServerValidationSupport(context),
        new CommonCodeSystemsTerminologyService(context));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    module.setAnyExtensionsAllowed(true);  // Amana's own extensions have no published profile
    FhirValidator validator = context.newValidator().registerValidatorModule(module);
    int resources = 0, errors = 0, warnings = 0;
    for (String name : args) {
      List<String> lines = Files.readAllLines(Path.of(name), StandardCharsets.UTF_8);
      boolean ndjson = name.endsWith(".ndjson");
      List<String> documents = ndjson ? lines : List.of(String.join("\n", lines));
      for (int i = 0; i < documents.size(); i++) {
        String document = documents.get(i);
        if (document.isBlank()) continue;
        resources++;
        ValidationResult result = validator.validateWithResult(document);
        for (SingleValidationMessage message : result.getMessages()) {
          ResultSeverityEnum severity = message.getSeverity();
          if (severity == ResultSeverityEnum.ERROR || severity == ResultSeverityEnum.FATAL) {
            errors++;
          } else if (severity == ResultSeverityEnum.WARNING) {
            warnings++;
          } else {
            continue;
          }
          System.out.println(severity + " " + name + ":" + (i + 1) + " "
              + message.getLocationString() + " " + message.getMessage());
        }
      }
    }
    System.out.println("validated " + resources + " resources: " + errors + " errors, "
        + warnings + " warnings");
    System.exit(errors > 0 ? 1 : 0);
  }
}
