// JavaDates: a local date-time as MetricsHub reads its --expires-on and its stored expiry
// (LocalDateTime.parse), resolved in a zone as atZone does, for spec/java_dates_spec.lua. One
// JVM reads every zone and date given:
//
//   java JavaDates @ZONE DATE... [@ZONE DATE...]
//
// prints, per DATE, "ZONE DATE SECONDS" (toEpochSecond) or "ZONE DATE invalid".
import java.time.LocalDateTime;
import java.time.ZoneId;
import java.time.format.DateTimeParseException;
import java.util.TimeZone;

public class JavaDates {
    public static void main(String[] args) {
        String zone = TimeZone.getDefault().getID();
        for (String s : args) {
            if (s.startsWith("@")) {
                zone = s.substring(1);
                TimeZone.setDefault(TimeZone.getTimeZone(zone));
                continue;
            }
            String seconds;
            try {
                seconds = Long.toString(LocalDateTime.parse(s).atZone(ZoneId.systemDefault()).toEpochSecond());
            } catch (DateTimeParseException e) {
                seconds = "invalid";
            }
            System.out.println(zone + " " + s + " " + seconds);
        }
    }
}
